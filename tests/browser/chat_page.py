"""Driving the chat demo page (``/``) from tests: join, say, read what it shows."""

from __future__ import annotations

import uuid

from playwright.sync_api import Page, expect

from tests.browser.conftest import WAIT

CHANNEL = "chat:lobby"


def unique(prefix: str) -> str:
    """A text no other test uses: tests share the server and its chat:lobby channel."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def open_chat(page: Page, url: str, nick: str, query: str = "") -> None:
    """Load the chat page, wait until it is subscribed to the lobby, and join as ``nick``."""
    page.goto(url + "/" + query)
    expect(page.locator("#status")).to_have_text("connected")
    expect(page.locator("#messages")).to_have_attribute("data-subscribed", "true")
    page.fill("#nickname", nick)
    page.press("#nickname", "Enter")
    expect(page.locator("#message")).to_be_visible()


def say(page: Page, text: str) -> None:
    page.fill("#message", text)
    page.press("#message", "Enter")
    expect(page.locator("#message")).to_have_value("")


def lines(page: Page) -> list[str]:
    texts: list[str] = page.eval_on_selector_all(
        "#messages .message", "els => els.map(e => e.textContent)"
    )
    return texts


def wait_for_line(page: Page, text: str, timeout: float = WAIT) -> None:
    page.wait_for_function(
        """text => Array.from(document.querySelectorAll('#messages .message'))
                        .some(e => e.textContent === text)""",
        arg=text,
        timeout=timeout,
    )


def assert_once(page: Page, *texts: str) -> None:
    shown = lines(page)
    for text in texts:
        assert shown.count(text) == 1, f"{text!r} shown {shown.count(text)} times in {shown}"


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
