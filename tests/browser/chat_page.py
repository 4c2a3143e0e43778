"""Driving the chat app (``/``) from tests: join, say, switch rooms, read what it shows."""

from __future__ import annotations

import uuid

from playwright.sync_api import Page, expect

from tests.browser.conftest import WAIT

CHANNEL = "chat:lobby"

#: The text of each publication shown in the room on screen: "nick: text", or the text
#: alone for an app's message without a nick (pending ones not included).
_LINES = """() => Array.from(document.querySelectorAll(
        '#messages .room-log:not([hidden]):not(.pending-log) .message'))
    .map(e => {
        const nick = e.querySelector('.nick'), text = e.querySelector('.text');
        return (nick ? nick.textContent + ': ' : '') + (text ? text.textContent : '');
    })"""


def unique(prefix: str) -> str:
    """A text no other test uses: tests share the server and its chat:lobby channel."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def open_chat(page: Page, url: str, nick: str, query: str = "") -> None:
    """Load the chat, join as ``nick`` and wait until the room on screen is subscribed.

    A name held by a page of another test that has just closed is free again once the
    server has seen that connection go (a polling one lingers ``sockjs.disconnect_delay``):
    the join is retried until then, as a person would.
    """
    page.goto(url + "/" + query)
    join(page, nick)


def join(page: Page, nick: str, attempts: int = 12) -> None:
    """Pick ``nick`` on the join card (shown), retrying while it is taken (see open_chat)."""
    for attempt in range(attempts):
        expect(page.locator("#nickname")).to_be_visible()
        page.fill("#nickname", nick)
        page.press("#nickname", "Enter")
        page.wait_for_function(
            """() => !document.getElementById('message').disabled
                     || (!document.getElementById('join-error').hidden
                         && !document.getElementById('join-button').disabled)"""
        )
        if not page.locator("#message").is_disabled():
            break
        assert attempt < attempts - 1, page.text_content("#join-error")
        page.wait_for_timeout(2500)
    wait_ready(page)


def wait_ready(page: Page) -> None:
    """Connected, the room on screen subscribed and its backlog shown."""
    expect(page.locator("#status")).to_have_text("connected")
    expect(page.locator("#messages")).to_have_attribute("data-subscribed", "true")


def say(page: Page, text: str) -> None:
    page.fill("#message", text)
    page.press("#message", "Enter")
    expect(page.locator("#message")).to_have_value("")


def lines(page: Page) -> list[str]:
    texts: list[str] = page.evaluate(_LINES)
    return texts


def wait_for_line(page: Page, text: str, timeout: float = WAIT) -> None:
    page.wait_for_function(f"text => ({_LINES})().includes(text)", arg=text, timeout=timeout)


def wait_for_count(page: Page, part: str, count: int, timeout: float = WAIT) -> None:
    """Wait until ``count`` lines (at least) on screen contain ``part``."""
    page.wait_for_function(
        f"([part, count]) => ({_LINES})().filter(t => t.includes(part)).length >= count",
        arg=[part, count],
        timeout=timeout,
    )


def assert_once(page: Page, *texts: str) -> None:
    shown = lines(page)
    for text in texts:
        assert shown.count(text) == 1, f"{text!r} shown {shown.count(text)} times in {shown}"


def pending(page: Page) -> list[str]:
    """The messages on screen still waiting to be sent (or to come back)."""
    texts: list[str] = page.eval_on_selector_all(
        "#messages .pending-log:not([hidden]) .message .text", "els => els.map(e => e.textContent)"
    )
    return texts


def switch_room(page: Page, room: str) -> None:
    page.click(f"#rooms .room-button[data-room='{room}']")
    expect(page.locator("#messages")).to_have_attribute("data-room", room)
    expect(page.locator("#messages")).to_have_attribute("data-subscribed", "true")


def people(page: Page) -> list[str]:
    names: list[str] = page.eval_on_selector_all(
        "#people .person-name", "els => els.map(e => e.textContent)"
    )
    return names


def record_status(page: Page) -> None:
    """Record every text ``#status`` shows from now on, in ``window.__statuses``,
    and every (re)subscription in ``window.__subscribed``."""
    page.evaluate(
        """() => {
            const el = document.getElementById('status');
            window.__statuses = [el.textContent];
            new MutationObserver(() => window.__statuses.push(el.textContent))
                .observe(el, {childList: true, characterData: true, subtree: true});
            window.__subscribed = [];
            window.chatClient.on('subscribed', d => window.__subscribed.push(d));
        }"""
    )


def statuses(page: Page) -> list[str]:
    result: list[str] = page.evaluate("window.__statuses")
    return result
