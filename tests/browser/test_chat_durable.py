"""The chat under load and across a restart: a burst of 500 messages from three people on
three transports reaches everyone in one order, and a restart of the durable default
(SQLite) loses and doubles nothing, a message typed while the server was down included."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from orbiter.ports import free_port
from tests.browser.chat_page import (
    assert_once,
    lines,
    open_chat,
    pending,
    say,
    unique,
    wait_for_count,
    wait_for_line,
    wait_ready,
)
from tests.browser.conftest import WAIT
from tests.support.server import RunningServer

#: Typed into the page's own form (its submit handler, as Enter does), as fast as it goes.
TYPE_MANY = """([prefix, count]) => {
    const input = document.getElementById('message');
    const form = document.getElementById('send-form');
    for (let i = 0; i < count; i++) {
        input.value = `${prefix}-${String(i).padStart(3, '0')}`;
        form.requestSubmit();
    }
}"""


def enter_room(page: Page, room: str) -> None:
    page.fill("#room-name", room)
    page.press("#room-name", "Enter")
    expect(page.locator("#messages")).to_have_attribute("data-room", room)
    wait_ready(page)


def test_burst_of_500_from_three_transports_same_order_everywhere(
    server: RunningServer, new_page: Callable[[], Page]
) -> None:
    room = unique("burst")
    tag = unique("b")
    senders = {"websocket": 167, "eventsource": 167, "xhr-polling": 166}
    pages: dict[str, Page] = {}
    for transport in senders:
        page = new_page()
        open_chat(page, server.url, unique(transport[:4])[:12], f"?transports={transport}")
        assert page.evaluate("window.chatClient.transport") == transport
        enter_room(page, room)
        pages[transport] = page
    for transport, count in senders.items():
        pages[transport].evaluate(TYPE_MANY, [f"{tag}-{transport}", count])

    for page in pages.values():
        wait_for_count(page, tag, 500, timeout=60_000)
    first = next(iter(pages.values()))
    first.wait_for_timeout(300)  # would a duplicate follow?
    order = [t for t in lines(first) if tag in t]
    assert len(order) == 500
    assert len(set(order)) == 500
    for transport, page in pages.items():
        assert [t for t in lines(page) if tag in t] == order, transport
        assert pending(page) == []
        # Each sender's own messages in the order typed.
        own = [t.split(": ", 1)[1] for t in order if f"{tag}-{transport}-" in t]
        assert own == [f"{tag}-{transport}-{i:03d}" for i in range(senders[transport])]


def test_restart_on_sqlite_loses_and_doubles_nothing(
    new_page: Callable[[], Page], tmp_path: Path
) -> None:
    args = ("--port", str(free_port()), "--data-dir", str(tmp_path / "data"))
    srv = RunningServer(args=args)
    try:
        ann, bob = new_page(), new_page()
        open_chat(ann, srv.url, "ann")
        open_chat(bob, srv.url, "bob", "?transports=xhr-polling")
        before = [unique("before") for _ in range(3)]
        for i, text in enumerate(before):
            say(ann if i % 2 == 0 else bob, text)
        for page in (ann, bob):
            for i, text in enumerate(before):
                wait_for_line(page, f"{'ann' if i % 2 == 0 else 'bob'}: {text}")

        srv.stop()
        expect(ann.locator("#status")).to_have_text("reconnecting")
        typed = unique("typed-while-down")
        say(ann, typed)
        assert pending(ann) == [typed]
        srv = RunningServer(args=args)  # the same port and data: the same history

        after = unique("after")
        wait_for_line(bob, f"ann: {typed}", timeout=WAIT * 2)
        wait_ready(bob)
        say(bob, after)
        expected = [
            *(f"{'ann' if i % 2 == 0 else 'bob'}: {t}" for i, t in enumerate(before)),
            f"ann: {typed}",
            f"bob: {after}",
        ]
        carl = new_page()  # a new page reads it all from history
        open_chat(carl, srv.url, "carl")
        for page in (ann, bob, carl):
            wait_for_line(page, f"bob: {after}", timeout=WAIT * 2)
        ann.wait_for_timeout(500)  # would a duplicate follow?
        for page in (ann, bob, carl):
            assert_once(page, *expected)
            assert [t for t in lines(page) if t in expected] == expected
        assert pending(ann) == []
        assert ann.locator("#messages .notice", has_text="missed").count() == 0
    finally:
        srv.stop()
