"""orbiter.js over every transport: each forced in turn, fallback when WebSocket is
blocked, and no loss or duplicate when a transport dies mid-stream."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from orbiter.client import Client
from tests.browser.chat_page import CHANNEL, lines, open_chat, say, unique, wait_for_line
from tests.browser.conftest import BLOCK_WEBSOCKET, WAIT
from tests.support.relay import Relay
from tests.support.server import RunningServer

TRANSPORTS = ["websocket", "xhr-streaming", "eventsource", "xhr-polling", "jsonp-polling"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_chat_over_each_transport(
    server: RunningServer, new_page: Callable[[], Page], transport: str
) -> None:
    page = new_page()
    other = new_page()
    open_chat(page, server.url, "ann", f"?transports={transport}")
    open_chat(other, server.url, "bob")
    assert page.evaluate("window.chatClient.transport") == transport
    expect(page.locator("#transport")).to_have_text(transport)
    mine, theirs, api = unique("mine"), unique("theirs"), unique("api")
    say(page, mine)
    say(other, theirs)
    Client(server.url).publish(CHANNEL, {"nick": "app", "text": api})
    for p in (page, other):
        for text in (f"ann: {mine}", f"bob: {theirs}", f"app: {api}"):
            wait_for_line(p, text)
    page.wait_for_timeout(300)
    for text in (f"ann: {mine}", f"bob: {theirs}", f"app: {api}"):
        assert lines(page).count(text) == 1


def test_falls_back_when_websocket_is_blocked(
    server: RunningServer, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    page.add_init_script(BLOCK_WEBSOCKET)
    open_chat(page, server.url, "carl")
    assert page.evaluate("window.__blockedWebSockets") >= 1
    assert page.evaluate("window.chatClient.transport") == "xhr-streaming"
    text = unique("fallback")
    Client(server.url).publish(CHANNEL, {"nick": "app", "text": text})
    wait_for_line(page, f"app: {text}")


@pytest.mark.parametrize("transport", ["websocket", "xhr-streaming", "xhr-polling"])
def test_transport_killed_mid_stream_loses_and_duplicates_nothing(
    server: RunningServer, relay: Relay, new_page: Callable[[], Page], transport: str
) -> None:
    page = new_page()
    open_chat(page, relay.url, "dora", f"?transports={transport}")
    tag = unique("seq")
    count = 60
    publisher = Client(server.url)

    def publish_all() -> None:
        for i in range(count):
            publisher.publish(CHANNEL, {"nick": "app", "text": f"{tag}-{i:03d}"})
            time.sleep(0.02)

    thread = threading.Thread(target=publish_all)
    thread.start()
    page.wait_for_function(
        "tag => Array.from(document.querySelectorAll('#messages .message'))"
        ".some(e => e.textContent.includes(tag))",
        arg=tag,
    )
    relay.cut()
    time.sleep(0.5)
    relay.restore()
    thread.join(30)
    wait_for_line(page, f"app: {tag}-{count - 1:03d}", timeout=WAIT)
    page.wait_for_timeout(300)
    got = [line for line in lines(page) if tag in line]
    assert got == [f"app: {tag}-{i:03d}" for i in range(count)]
    assert page.evaluate("window.chatClient.transport") == transport


@pytest.mark.parametrize("transport", ["websocket", "xhr-polling"])
def test_publication_tags_reach_the_page(
    server: RunningServer, new_page: Callable[[], Page], transport: str
) -> None:
    """Tags from the Python client and from orbiter.js's publish arrive in ``meta.tags``."""
    page = new_page()
    open_chat(page, server.url, "tagger", f"?transports={transport}")
    page.evaluate(
        """(channel) => {
            window.__tags = [];
            window.chatClient.subscribe(channel, (data, meta) => {
                if (data.nick === "tags") window.__tags.push([data.text, meta.tags || null]);
            });
        }""",
        CHANNEL,
    )
    first, second, third = unique("api"), unique("page"), unique("none")
    Client(server.url).publish(CHANNEL, {"nick": "tags", "text": first}, tags={"from": "api"})
    page.wait_for_function("window.__tags.length === 1", timeout=WAIT)
    page.evaluate(
        """([channel, text]) => window.chatClient.publish(
            channel, {nick: "tags", text}, {from: "page"})""",
        [CHANNEL, second],
    )
    page.wait_for_function("window.__tags.length === 2", timeout=WAIT)
    Client(server.url).publish(CHANNEL, {"nick": "tags", "text": third})
    page.wait_for_function("window.__tags.length === 3", timeout=WAIT)
    assert page.evaluate("window.__tags") == [
        [first, {"from": "api"}],
        [second, {"from": "page"}],
        [third, None],
    ]
