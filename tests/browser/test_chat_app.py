"""The chat app's files, its token mode, its looks on a phone and in the dark, and the
README's screenshot (docs/chat.png), written here so that it shows the app as it is."""

from __future__ import annotations

import struct
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.chat_page import join, lines, open_chat, people, say, unique, wait_for_line
from tests.browser.conftest import WAIT
from tests.support.keys import SECRET, token
from tests.support.server import RunningServer

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "chat.png"

AUTH_CONFIG = f"""
[auth]
secret = "{SECRET}"

[[channel]]
match = "chat:*"
client_publish = true
presence = true
"""


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/", "text/html"),
        ("/static/chat.js", "text/javascript"),
        ("/static/chat.css", "text/css"),
        ("/static/favicon.svg", "image/svg+xml"),
        ("/favicon.ico", "image/svg+xml"),
    ],
)
def test_files_with_types_and_revalidation(server: RunningServer, path: str, kind: str) -> None:
    status, headers, body = fetch(server.url + path)
    assert status == 200
    assert headers["Content-Type"].startswith(kind)
    assert headers["Cache-Control"] == "no-cache"
    assert body
    again, _, empty = fetch(server.url + path, {"If-None-Match": headers["ETag"]})
    assert again == 304
    assert empty == b""


def test_no_failed_request_on_load(server: RunningServer, new_page: Callable[[], Page]) -> None:
    page = new_page()
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("requestfailed", lambda r: failed.append(f"failed {r.url}"))
    open_chat(page, server.url, unique("load")[:16])
    page.reload()
    expect(page.locator("#status")).to_have_text("connected")
    assert failed == []
    icon = page.locator("link[rel=icon]").get_attribute("href")
    assert icon is not None
    assert fetch(server.url + icon)[0] == 200


@pytest.fixture(scope="module")
def authed() -> Iterator[RunningServer]:
    srv = RunningServer(AUTH_CONFIG)
    yield srv
    srv.stop()


def test_with_tokens_the_name_comes_from_the_token(
    authed: RunningServer, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    page.goto(authed.url + "/")
    expect(page.locator("#auth-needed")).to_be_visible()
    expect(page.locator("#auth-needed")).to_contain_text("token")
    expect(page.locator("#join-form")).to_be_hidden()  # no nickname to pick
    expect(page.locator("#status")).to_have_text("offline")

    page.fill("#token", "not-a-token")
    page.press("#token", "Enter")
    expect(page.locator("#token-error")).to_be_visible()

    dora = new_page()
    dora.goto(f"{authed.url}/?token={token('dora', ttl=600)}")
    expect(dora.locator("#status")).to_have_text("connected")
    expect(dora.locator("#my-nick")).to_have_text("dora")
    expect(dora.locator("#join")).to_be_hidden()
    assert "token" not in dora.url  # out of the address bar
    dora.reload()  # kept for the tab
    expect(dora.locator("#my-nick")).to_have_text("dora")
    expect(dora.locator("#status")).to_have_text("connected")
    page.fill("#token", token("eve", ttl=600))  # pasted
    page.press("#token", "Enter")
    expect(page.locator("#my-nick")).to_have_text("eve")
    text = unique("signed")
    say(dora, text)
    wait_for_line(page, f"dora: {text}")
    page.wait_for_function("() => document.querySelectorAll('#people .person').length === 2")
    assert sorted(people(page)) == ["dora", "eve"]

    forged = new_page()  # a token signed with another secret: refused, explained again
    forged.goto(f"{authed.url}/?token={token('mallory', key='not-the-secret-at-all-32-bytes!!')}")
    expect(forged.locator("#token-error")).to_contain_text("refused", timeout=WAIT)
    expect(forged.locator("#status")).to_have_text("offline")


def test_phone_width_dark_scheme_and_keyboard(browser: Browser, server: RunningServer) -> None:
    context = browser.new_context(viewport={"width": 360, "height": 720}, color_scheme="dark")
    context.set_default_timeout(WAIT)
    try:
        page = context.new_page()
        open_chat(page, server.url, unique("phone")[:16])
        room = unique("pocket")
        # Nothing wider than the phone.
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        expect(page.locator("#sidebar")).not_to_be_in_viewport()
        page.click("#menu")  # the rooms are in a drawer
        expect(page.locator("#sidebar")).to_be_in_viewport()
        expect(page.locator("#menu")).to_have_attribute("aria-expanded", "true")
        page.keyboard.press("Escape")
        expect(page.locator("#sidebar")).not_to_be_in_viewport()
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        red, green, blue = (int(v) for v in background[4:-1].split(",")[:3])
        assert red + green + blue < 150, background  # dark

        page.click("#menu")
        page.fill("#room-name", room)
        page.keyboard.press("Enter")
        expect(page.locator("#messages")).to_have_attribute("data-room", room)
        page.keyboard.press("Alt+ArrowUp")  # the room above: the lobby
        expect(page.locator("#messages")).to_have_attribute("data-room", "lobby")
        page.keyboard.press("Alt+ArrowDown")
        expect(page.locator("#messages")).to_have_attribute("data-room", room)
        expect(page.locator("#message")).to_be_focused()
        page.keyboard.type("from the keyboard")
        page.keyboard.press("Enter")
        wait_for_line(page, f"{page.text_content('#my-nick')}: from the keyboard")
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
    finally:
        context.close()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_screenshot_for_the_readme(browser: Browser) -> None:
    """Two people in the lobby of a fresh server; the image goes to docs/chat.png."""
    srv = RunningServer()
    contexts = []
    try:
        pages = []
        for name in ("ann", "bob"):
            context = browser.new_context(
                viewport={"width": 1000, "height": 620},
                color_scheme="light",
                locale="en-US",
                timezone_id="UTC",
            )
            context.set_default_timeout(WAIT)
            contexts.append(context)
            page = context.new_page()
            page.clock.set_fixed_time("2026-05-04T10:42:00Z")
            page.goto(srv.url + "/")
            join(page, name)
            pages.append(page)
        ann, bob = pages
        ann.wait_for_function("() => document.querySelectorAll('#people .person').length === 2")
        conversation = [
            (ann, "hi bob! this page is orbiter's own chat, served at /"),
            (bob, "hey ann. every message came over a WebSocket, in one order for us both"),
            (ann, "try a room on the left, or close the lid: what you type waits, then goes once"),
            (bob, "and the app server can write too: https://example.com/docs"),
        ]
        for page, text in conversation:
            say(page, text)
            wait_for_line(ann, f"{'ann' if page is ann else 'bob'}: {text}")
        from orbiter.client import Client

        Client(srv.url).publish("chat:lobby", {"nick": "deploy-bot", "text": "build 142 is live"})
        wait_for_line(ann, "deploy-bot: build 142 is live")
        ann.locator("#message").blur()
        assert len(lines(ann)) == 5
        assert sorted(people(ann)) == ["ann", "bob"]
        data = ann.screenshot()
        width, height = png_size(data)
        assert (width, height) == (1000, 620)
        assert len(data) > 20_000  # text, colours, two people: not a blank page
        SCREENSHOT.write_bytes(data)
    finally:
        for context in contexts:
            context.close()
        srv.stop()
