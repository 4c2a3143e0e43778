"""The browser side: ``/static/orbiter.js`` and the chat demo, driven in headless Chromium.

These are plain (sync) tests: Playwright's sync API cannot run inside an
asyncio loop. The drop test puts a TCP relay between Chromium and the server
so that it can cut the browser's connection for real and refuse reconnects
for a while.
"""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, expect

from orbiter.client import Client
from tests.browser.chat_page import (
    CHANNEL,
    assert_once,
    lines,
    open_chat,
    record_status,
    say,
    statuses,
    unique,
    wait_for_line,
)
from tests.browser.conftest import WAIT
from tests.support.relay import Relay
from tests.support.server import RunningServer

# --------------------------------------------------------------------------- tests


def test_two_browsers_chat(server: RunningServer, new_page: Callable[[], Page]) -> None:
    ann, bob = new_page(), new_page()
    open_chat(ann, server.url, "ann")
    open_chat(bob, server.url, "bob")
    hello, reply = unique("hello"), unique("hi ann")

    say(ann, hello)
    say(bob, reply)

    expected = [f"ann: {hello}", f"bob: {reply}"]
    for page in (ann, bob):
        for text in expected:
            wait_for_line(page, text)
    ann.wait_for_timeout(500)  # would a duplicate follow?
    for page in (ann, bob):
        assert_once(page, *expected)
        # Same channel, same order for everyone.
        shown = lines(page)
        assert shown.index(expected[0]) < shown.index(expected[1])


def test_reconnect_recovers_missed_messages(
    server: RunningServer, relay: Relay, new_page: Callable[[], Page]
) -> None:
    ann = new_page()  # through the relay: its connection can be cut
    bob = new_page()  # directly to the server
    open_chat(ann, relay.url, "ann")
    open_chat(bob, server.url, "bob")
    before, queued = unique("before"), unique("queued")
    down, after = unique("while-down"), unique("after")
    say(ann, before)
    wait_for_line(bob, f"ann: {before}")
    wait_for_line(ann, f"ann: {before}")
    record_status(ann)

    relay.cut()
    ann.wait_for_function("document.getElementById('status').textContent !== 'connected'")
    # Published while ann is offline: only history can bring it back.
    Client(server.url).publish(CHANNEL, {"nick": "app", "text": down})
    wait_for_line(bob, f"app: {down}")
    # Sent by ann while offline: queued by orbiter.js, sent after reconnecting.
    say(ann, queued)
    # Let at least one reconnect attempt fail against the refusing relay.
    ann.wait_for_function(
        "window.__statuses.filter(s => s === 'connecting').length >= 1", timeout=WAIT
    )
    ann.wait_for_function(
        "window.__statuses.filter(s => s === 'disconnected').length >= 2", timeout=WAIT
    )
    assert relay.refused >= 1
    assert f"app: {down}" not in lines(ann)

    accepted = relay.accepted
    relay.restore()
    expect(ann.locator("#status")).to_have_text("connected", timeout=WAIT)
    for page in (ann, bob):
        wait_for_line(page, f"app: {down}")
        wait_for_line(page, f"ann: {queued}")

    Client(server.url).publish(CHANNEL, {"nick": "app", "text": after})
    for page in (ann, bob):
        wait_for_line(page, f"app: {after}")
    ann.wait_for_timeout(500)  # would a duplicate follow?

    expected = [f"ann: {before}", f"app: {down}", f"ann: {queued}", f"app: {after}"]
    for page in (ann, bob):
        assert_once(page, *expected)
    history = statuses(ann)
    assert history[0] == "connected"
    assert "disconnected" in history
    assert history[-1] == "connected"
    assert history.index("disconnected") < len(history) - 1
    assert relay.accepted > accepted  # the reconnect went through the relay
    # Resubscribed with `since` and recovered from history; nothing was missed.
    resubscribed = ann.evaluate("window.__subscribed")
    assert [(s["channel"], s["recovered"]) for s in resubscribed] == [(CHANNEL, True)]
    assert ann.locator("#messages .notice").count() == 0
    assert ann.evaluate("window.chatClient.state") == "connected"


def test_orbited_connect_receives_events(
    server: RunningServer, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    page.goto(server.url + "/")
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    page.evaluate(
        """([host, port]) => {
            Orbited.settings = {hostname: host, port: Number(port), protocol: "http"};
            window.__got = [];
            window.__orbited = Orbited.connect(data => window.__got.push(data),
                                               "alice", "/chat", "0");
        }""",
        [host, port],
    )
    page.wait_for_function("window.__orbited.state === 'connected'")

    results = Client(server.url).event(["alice, 0, /chat"], "<b>hi</b>")
    assert len(results) == 1
    assert results[0]["key"] == "alice, 0, /chat"

    page.wait_for_function("window.__got.length >= 1")
    page.wait_for_timeout(300)
    assert page.evaluate("window.__got") == ["<b>hi</b>"]
    assert page.evaluate("window.__orbited instanceof Orbiter.Client")


def test_message_text_is_not_html(server: RunningServer, new_page: Callable[[], Page]) -> None:
    ann, bob = new_page(), new_page()
    open_chat(ann, server.url, "ann")
    open_chat(bob, server.url, "<b>bob</b>")
    payload = '<img src=x onerror="window.__xss=1">'

    say(ann, payload)
    say(bob, "plain")

    for page in (ann, bob):
        wait_for_line(page, f"ann: {payload}")
        wait_for_line(page, "<b>bob</b>: plain")
        assert page.locator("#messages img").count() == 0
        assert page.locator("#messages b").count() == 0
    ann.wait_for_timeout(300)  # an onerror handler would have run by now
    for page in (ann, bob):
        assert page.evaluate("typeof window.__xss") == "undefined"


def test_library_loads_as_es_module(server: RunningServer, new_page: Callable[[], Page]) -> None:
    page = new_page()
    # A bare page on the server's origin that imports the library as a module.
    page.route(
        server.url + "/module-test",
        lambda route: route.fulfill(
            content_type="text/html",
            body="""<!doctype html><script type="module">
                import "/static/orbiter.js";
                const client = new globalThis.Orbiter.Client({autoConnect: false});
                window.__result = {url: client.url, state: client.state,
                                   orbited: typeof globalThis.Orbited.connect};
            </script>""",
        ),
    )
    page.goto(server.url + "/module-test")
    page.wait_for_function("window.__result !== undefined")
    assert page.evaluate("window.__result") == {
        "url": server.ws_url,
        "state": "disconnected",
        "orbited": "function",
    }


def test_publish_refused_rejects_with_code(
    server: RunningServer, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    page.goto(server.url + "/")
    expect(page.locator("#status")).to_have_text("connected")
    code = page.evaluate(
        """() => window.chatClient.publish("news", {text: "x"})
                    .then(() => "published", err => err.code)"""
    )
    assert code == 103
