"""The chat app at ``/`` in headless Chromium, several browser contexts (people) at once:
nicknames, rooms, history, presence, the wall, what messages show, reconnecting, and
orbiter.js itself on the page (Orbited's API, the ES-module load, refusals).

These are plain (sync) tests: Playwright's sync API cannot run inside an asyncio loop.
The reconnect test puts a TCP relay between Chromium and the server so that it can cut
the browser's connection for real and refuse reconnects for a while.
"""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, WebSocketRoute, expect

from orbiter.client import Client
from tests.browser.chat_page import (
    CHANNEL,
    assert_once,
    join,
    lines,
    open_chat,
    pending,
    people,
    record_status,
    say,
    statuses,
    switch_room,
    unique,
    wait_for_count,
    wait_for_line,
    wait_ready,
)
from tests.browser.conftest import WAIT
from tests.support.relay import Relay
from tests.support.server import RunningServer


def nick(prefix: str) -> str:
    """A nickname no other test holds (tests share the server)."""
    return unique(prefix)[:16]


def test_two_people_chat(server: RunningServer, new_page: Callable[[], Page]) -> None:
    ann, bob = new_page(), new_page()
    a, b = nick("ann"), nick("bob")
    open_chat(ann, server.url, a)
    open_chat(bob, server.url, b)
    hello, reply = unique("hello"), unique("hi ann")

    say(ann, hello)  # Enter sends
    say(bob, reply)

    expected = [f"{a}: {hello}", f"{b}: {reply}"]
    for page in (ann, bob):
        for text in expected:
            wait_for_line(page, text)
    ann.wait_for_timeout(300)  # would a duplicate follow?
    for page in (ann, bob):
        assert_once(page, *expected)
        shown = lines(page)
        assert shown.index(expected[0]) < shown.index(expected[1])  # one order for all
    # Own messages are marked, others' not; every message has a timestamp.
    mine = ann.locator("#messages .message.mine .text")
    assert hello in mine.all_text_contents()
    assert reply not in mine.all_text_contents()
    stamp = ann.locator("#messages .message", has_text=hello).locator("time")
    assert stamp.get_attribute("datetime")
    assert ":" in stamp.inner_text()


def test_nickname_is_kept_and_a_name_in_use_is_refused(
    server: RunningServer, new_page: Callable[[], Page]
) -> None:
    ann, other = new_page(), new_page()
    a = nick("ann")
    open_chat(ann, server.url, a)
    said = unique("before-reload")
    say(ann, said)
    wait_for_line(ann, f"{a}: {said}")

    ann.reload()  # no nickname asked again; the room's history is back
    wait_ready(ann)
    assert ann.locator("#join").is_hidden()
    expect(ann.locator("#my-nick")).to_have_text(a)
    wait_for_line(ann, f"{a}: {said}")

    other.goto(server.url + "/")
    other.fill("#nickname", a)
    other.press("#nickname", "Enter")
    expect(other.locator("#join-error")).to_contain_text("taken")
    assert other.locator("#message").is_disabled()
    join(other, nick("ann-2"))  # another name is fine
    # The same person in a second tab of the same browser keeps the name.
    tab = ann.context.new_page()
    tab.goto(server.url + "/")
    wait_ready(tab)
    expect(tab.locator("#my-nick")).to_have_text(a)


def test_rooms_create_join_switch_unread_leave(
    server: RunningServer, new_page: Callable[[], Page]
) -> None:
    ann, bob = new_page(), new_page()
    a, b = nick("ann"), nick("bob")
    room = unique("room")
    open_chat(ann, server.url, a)
    open_chat(bob, server.url, b)

    ann.fill("#room-name", room)
    ann.press("#room-name", "Enter")
    expect(ann.locator("#messages")).to_have_attribute("data-room", room)
    expect(ann.locator("#room-title")).to_have_text(f"#{room}")
    # bob sees it listed (chat:rooms) and joins it with a click.
    bob.click(f"#other-rooms .room-button[data-room='{room}']")
    expect(bob.locator("#messages")).to_have_attribute("data-room", room)
    expect(bob.locator("#messages")).to_have_attribute("data-subscribed", "true")
    ann.wait_for_function(
        "who => Array.from(document.querySelectorAll('#messages .notice'))"
        ".some(n => n.textContent.includes(who + ' joined'))",
        arg=b,
    )
    assert sorted(people(ann)) == sorted([a, b])

    in_room = unique("in-room")
    say(bob, in_room)
    wait_for_line(ann, f"{b}: {in_room}")
    switch_room(ann, "lobby")
    assert f"{b}: {in_room}" not in lines(ann)  # each room its own log
    say(bob, unique("unread-1"))
    say(bob, unique("unread-2"))
    badge = ann.locator(f"#rooms .room-button[data-room='{room}'] .unread")
    expect(badge).to_have_text("2")
    expect(ann).to_have_title("(2) orbiter chat")
    switch_room(ann, room)
    expect(badge).to_have_count(0)

    bob.click("#leave-room")
    expect(bob.locator("#messages")).to_have_attribute("data-room", "lobby")
    expect(bob.locator(f"#rooms .room-button[data-room='{room}']")).to_have_count(0)
    ann.wait_for_function(
        "who => Array.from(document.querySelectorAll('#messages .notice'))"
        ".some(n => n.textContent.includes(who + ' left'))",
        arg=b,
        timeout=WAIT,
    )
    assert people(ann) == [a]
    # Rooms joined are kept across a reload.
    ann.reload()
    wait_ready(ann)
    expect(ann.locator(f"#rooms .room-button[data-room='{room}']")).to_have_count(1)
    # The room list (chat:rooms) got the new room once, however often pages loaded.
    listed = [p["data"] for p in Client(server.url).history("chat:rooms")["publications"]]
    assert listed.count({"room": room}) == 1
    assert {"room": "lobby"} not in listed


def test_history_on_join_then_older_pages(
    server: RunningServer, new_page: Callable[[], Page]
) -> None:
    room = unique("history")
    tag = unique("old")
    api = Client(server.url)
    for i in range(120):
        api.publish(f"chat:{room}", {"nick": "app", "text": f"{tag}-{i:03d}"})
    page = new_page()
    open_chat(page, server.url, nick("reader"))
    page.fill("#room-name", room)
    page.press("#room-name", "Enter")
    wait_ready(page)
    wait_for_line(page, f"app: {tag}-119")
    shown = [t for t in lines(page) if tag in t]
    assert shown == [f"app: {tag}-{i:03d}" for i in range(70, 120)]  # the last 50
    expect(page.locator("#beginning")).to_be_hidden()
    # The button's own click, without scrolling it into view as page.click would: at the
    # top of the scroller the page loads older pages by itself (below), and a second page
    # loaded so during the click hid the button (3 runs in 10 on a loaded machine).
    page.locator("#older").dispatch_event("click")
    wait_for_line(page, f"app: {tag}-020")
    assert f"app: {tag}-019" not in lines(page)  # one page, not two
    page.evaluate("document.getElementById('scroller').scrollTop = 0")  # older on scroll
    wait_for_line(page, f"app: {tag}-000")
    expect(page.locator("#beginning")).to_be_visible()
    shown = [t for t in lines(page) if tag in t]
    assert shown == [f"app: {tag}-{i:03d}" for i in range(120)]


def test_app_json_values_links_and_the_wall(
    server: RunningServer, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    open_chat(page, server.url, nick("viewer"))
    word = unique("hi")
    api = Client(server.url)
    api.publish(CHANNEL, word)  # the README's curl: a bare string
    api.publish(CHANNEL, 42)
    api.publish(CHANNEL, [1, "two"])
    api.publish(CHANNEL, {"kind": word})
    api.publish(CHANNEL, {"text": f"{word} https://example.org/a?b=1. javascript:alert(1)"})
    for text in (word, "42", '[1,"two"]', f'{{"kind":"{word}"}}'):
        wait_for_line(page, text)
    wait_for_line(page, f"{word} https://example.org/a?b=1. javascript:alert(1)")
    links = page.locator("#messages .message", has_text=word).locator("a")
    expect(links).to_have_count(1)
    assert links.get_attribute("href") == "https://example.org/a?b=1"
    assert "noopener" in (links.get_attribute("rel") or "")

    other = new_page()
    open_chat(other, server.url, nick("viewer2"))
    notice = unique("maintenance at five")
    api.wall(notice)
    for p in (page, other):
        expect(p.locator("#wall-text")).to_have_text(notice)
    page.click("#wall-close")
    expect(page.locator("#wall")).to_be_hidden()


def test_html_and_script_stay_text(server: RunningServer, new_page: Callable[[], Page]) -> None:
    pwned = "window.__pwned=1"
    payloads = [
        f"<img src=x onerror={pwned}>",
        f"<script>{pwned}</script>",
        f'"><svg onload={pwned}>',
        f"<a href=javascript:{pwned}>x</a>",
    ]
    ann, bob = new_page(), new_page()
    evil = "<b>bob</b><script>"
    open_chat(ann, server.url, nick("ann"))
    open_chat(bob, server.url, evil)
    room = f"<img src=x onerror={pwned}>"
    bob.fill("#room-name", room)
    bob.press("#room-name", "Enter")
    expect(bob.locator("#room-title")).to_have_text(f"#{room}")
    for text in payloads:
        say(bob, text)
    Client(server.url).publish(f"chat:{room}", {"nick": payloads[1], "text": payloads[0]})
    ann.click(f"#other-rooms .room-button[data-room='{room}']")
    wait_ready(ann)
    for page in (ann, bob):
        for text in payloads:
            wait_for_line(page, f"{evil}: {text}")
        wait_for_line(page, f"{payloads[1]}: {payloads[0]}")
        expect(page.locator(f"#rooms .room-button[data-room='{room}'] .room-name")).to_have_text(
            room
        )
        for selector in ("img", "script", "svg", "b", "a"):
            shown = f"#messages .room-log:not([hidden]) {selector}, #rooms {selector}"
            assert page.locator(shown).count() == 0
        page.hover("#messages .room-log:not([hidden]) .message .nick")
    ann.wait_for_timeout(300)  # an onerror or onload handler would have run by now
    for page in (ann, bob):
        assert page.evaluate("typeof window.__pwned") == "undefined"


def test_status_while_reconnecting_and_a_message_typed_offline(
    server: RunningServer, relay: Relay, new_page: Callable[[], Page]
) -> None:
    ann = new_page()  # through the relay: its connection can be cut
    bob = new_page()  # directly to the server
    a, b = nick("ann"), nick("bob")
    open_chat(ann, relay.url, a)
    open_chat(bob, server.url, b)
    expect(ann.locator("#transport")).to_have_text("websocket")
    before, queued = unique("before"), unique("typed-offline")
    down, after = unique("while-down"), unique("after")
    say(ann, before)
    wait_for_line(bob, f"{a}: {before}")
    wait_for_line(ann, f"{a}: {before}")
    record_status(ann)

    relay.cut()
    expect(ann.locator("#status")).to_have_text("reconnecting")
    expect(ann.locator("#transport")).not_to_be_empty()
    # Published while ann is offline: only history can bring it back.
    Client(server.url).publish(CHANNEL, {"nick": "app", "text": down})
    wait_for_line(bob, f"app: {down}")
    say(ann, queued)  # typed offline: shown as pending, not lost
    assert pending(ann) == [queued]
    ann.wait_for_function(
        "window.__statuses.filter(s => s === 'reconnecting').length >= 1", timeout=WAIT
    )
    ann.wait_for_timeout(1500)  # some reconnects fail against the refusing relay
    assert relay.refused >= 1
    assert f"app: {down}" not in lines(ann)
    assert pending(ann) == [queued]

    accepted = relay.accepted
    relay.restore()
    expect(ann.locator("#status")).to_have_text("connected", timeout=WAIT)
    for page in (ann, bob):
        wait_for_line(page, f"app: {down}")
        wait_for_line(page, f"{a}: {queued}")
    Client(server.url).publish(CHANNEL, {"nick": "app", "text": after})
    for page in (ann, bob):
        wait_for_line(page, f"app: {after}")
    ann.wait_for_timeout(500)  # would a duplicate follow?

    expected = [f"{a}: {before}", f"app: {down}", f"{a}: {queued}", f"app: {after}"]
    for page in (ann, bob):
        assert_once(page, *expected)
        shown = lines(page)
        assert [shown.index(t) for t in expected] == sorted(shown.index(t) for t in expected)
    assert pending(ann) == []
    history = statuses(ann)
    # Never the alarming "disconnected" while it retries: reconnecting, then connected.
    assert set(history) <= {"connected", "reconnecting"}, history
    assert history[0] == "connected"
    assert history[-1] == "connected"
    assert relay.accepted > accepted  # the reconnect went through the relay
    resubscribed = ann.evaluate("window.__subscribed")
    assert (CHANNEL, True) in [(s["channel"], s["recovered"]) for s in resubscribed]
    assert ann.locator("#messages .notice", has_text="missed").count() == 0


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
    open_chat(page, server.url, nick("refused"))
    code = page.evaluate(
        """() => window.chatClient.publish("news", {text: "x"})
                    .then(() => "published", err => err.code)"""
    )
    assert code == 103


def test_offline_browser_says_offline_and_sends_once_back_online(
    server: RunningServer, relay: Relay, new_page: Callable[[], Page]
) -> None:
    ann, bob = new_page(), new_page()
    a = nick("ann")
    open_chat(ann, relay.url, a)  # its connection goes down with the network
    open_chat(bob, server.url, nick("bob"))
    ann.context.set_offline(True)
    relay.cut()
    expect(ann.locator("#status")).to_have_text("offline")
    typed = unique("on-the-train")
    say(ann, typed)
    assert pending(ann) == [typed]
    expect(ann.locator("#messages .pending .pending-mark")).to_have_text("pending")
    relay.restore()
    ann.context.set_offline(False)  # orbiter.js reconnects at once on "online"
    expect(ann.locator("#status")).to_have_text("connected", timeout=WAIT)
    for page in (ann, bob):
        wait_for_line(page, f"{a}: {typed}")
    ann.wait_for_timeout(500)  # would a duplicate follow?
    for page in (ann, bob):
        assert_once(page, f"{a}: {typed}")
    assert pending(ann) == []


def test_a_message_published_twice_is_shown_once(
    server: RunningServer, new_page: Callable[[], Page]
) -> None:
    """A sender that could not know whether its publish went through sends it again with
    the same client message id (cid): every page shows it once, live or from history."""
    page = new_page()
    open_chat(page, server.url, nick("watcher"))
    text, cid = unique("retried"), unique("cid")
    api = Client(server.url)
    for _ in range(2):
        api.publish(CHANNEL, {"nick": "app", "text": text, "cid": cid})
    api.publish(CHANNEL, {"nick": "app", "text": text, "cid": unique("other-cid")})
    wait_for_count(page, f"app: {text}", 2)
    page.wait_for_timeout(300)
    assert lines(page).count(f"app: {text}") == 2  # the one with its own cid is another message
    late = new_page()
    open_chat(late, server.url, nick("late"))
    wait_for_line(late, f"app: {text}")
    assert lines(late).count(f"app: {text}") == 2


def test_a_message_typed_offline_survives_a_reload(
    server: RunningServer, new_page: Callable[[], Page]
) -> None:
    """The outbox is kept in the browser: typed offline, the tab reloaded (its files load,
    its WebSocket cannot), the message is still pending, and is sent once the connection
    is back. The page's WebSockets go through Playwright, which can refuse them."""
    ann, bob = new_page(), new_page()
    a = nick("ann")
    up = [True]
    sockets: list[WebSocketRoute] = []

    def websocket(route: WebSocketRoute) -> None:
        if not up[0]:
            route.close()
            return
        route.connect_to_server()
        sockets.append(route)

    ann.route_web_socket("**/connection/websocket", websocket)
    open_chat(ann, server.url, a, "?transports=websocket")
    open_chat(bob, server.url, nick("bob"))
    up[0] = False
    for route in sockets:
        route.close()
    expect(ann.locator("#status")).to_have_text("reconnecting")
    typed = unique("kept-in-the-browser")
    say(ann, typed)
    ann.reload()  # the name is remembered, the server cannot be asked: the page starts
    expect(ann.locator("#my-nick")).to_have_text(a, timeout=WAIT)
    assert pending(ann) == [typed]
    assert f"{a}: {typed}" not in lines(bob)
    up[0] = True
    expect(ann.locator("#status")).to_have_text("connected", timeout=WAIT)
    for page in (ann, bob):
        wait_for_line(page, f"{a}: {typed}")
    ann.wait_for_timeout(500)  # would a duplicate follow?
    for page in (ann, bob):
        assert_once(page, f"{a}: {typed}")
    assert pending(ann) == []
