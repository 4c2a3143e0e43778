"""The ported Athena chat (``examples/athena_chat``) in Chromium: two browsers, every transport.

A real ``orbiter serve --element examples.athena_chat.chat:chat``; each
browser context logs in through the login box, which gives way to the chat
area; everybody hears everybody; the server's walls (joins, leaves, and one
from the app server through ``POST /api/call``) reach every page; a browser
that leaves is noticed by the room. The same over the fallbacks orbiter.js
uses where WebSocket is blocked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page, expect

from orbiter.client import Client
from tests.browser.conftest import BLOCK_WEBSOCKET, WAIT
from tests.support.relay import Relay
from tests.support.server import RunningServer

# SockJS sessions whose page is gone end after disconnect_delay: 1 s, and an element
# outlives its connection by grace_period: 3 s, so leaving is noticed quickly.
CONFIG = """
[sockjs]
disconnect_delay = 1

[live]
grace_period = 3
"""


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    server = RunningServer(CONFIG, args=("--element", "examples.athena_chat.chat:chat"))
    yield server
    server.stop()


WIDGET = "Orbiter.Widget.get(document.getElementById('orbiter-live'))"


def lines(page: Page) -> list[str]:
    shown: list[str] = page.eval_on_selector_all(
        "[name=scrollArea] div", "ns => ns.map(n => n.textContent)"
    )
    return shown


def wait_for_line(page: Page, text: str) -> None:
    page.wait_for_function(
        """text => Array.from(document.querySelectorAll("[name=scrollArea] div"))
             .some(n => n.textContent === text)""",
        arg=text,
        timeout=WAIT,
    )


def open_chat(page: Page, url: str, transport: str) -> None:
    if transport == "blocked-websocket":
        page.add_init_script(BLOCK_WEBSOCKET)
        page.goto(url + "/")
    else:
        page.goto(f"{url}/?transports={transport}")
    page.wait_for_function(
        "() => { const w = Orbiter.Widget.get(document.getElementById('orbiter-live'));"
        " return w && w.element !== null; }",
        timeout=WAIT,
    )
    used = page.evaluate(
        "Orbiter.Widget.get(document.getElementById('orbiter-live')).client.transport"
    )
    if transport == "blocked-websocket":
        assert used == "xhr-streaming"
    else:
        assert used == transport


def login(page: Page, name: str) -> None:
    expect(page.locator("[name=sendLine]")).to_be_hidden()
    page.fill("[name=username]", name)
    page.click("[name=GO]")
    expect(page.locator("[name=chooseBox]")).to_be_hidden()
    expect(page.locator("[name=sendLine]")).to_be_visible()
    expect(page.locator("[name=loggedInAs]")).to_have_text(f"Logged in as {name}")


def say(page: Page, text: str) -> None:
    page.fill("[name=userMessage]", text)
    page.click("[name=sendLine] input[type=submit]")


@pytest.mark.parametrize(
    "transport",
    [
        "websocket",
        "xhr-streaming",
        "eventsource",
        "xhr-polling",
        "jsonp-polling",
        "blocked-websocket",
    ],
)
def test_two_browsers_chat_and_the_room_notices_one_leaving(
    server: RunningServer, new_page: Callable[[], Page], transport: str
) -> None:
    ann, bob = new_page(), new_page()
    tag = transport.replace("-", "")
    ann_name, bob_name = f"ann{tag}", f"bob{tag}"
    open_chat(ann, server.url, transport)
    open_chat(bob, server.url, transport)

    login(ann, ann_name)
    wait_for_line(ann, f" * user {ann_name} has joined the room")  # the server's wall
    login(bob, bob_name)
    for page in (ann, bob):
        wait_for_line(page, f" * user {bob_name} has joined the room")

    say(ann, "hello bob")
    say(bob, "hi ann")
    for page in (ann, bob):
        wait_for_line(page, f"{ann_name}: hello bob")
        wait_for_line(page, f"{bob_name}: hi ann")
    # Heard once each, in the order said.
    shown = lines(bob)
    assert shown.count(f"{ann_name}: hello bob") == 1
    assert shown.index(f"{ann_name}: hello bob") < shown.index(f"{bob_name}: hi ann")

    # A wall from the app server: POST /api/call to every chat widget on the node.
    wall = f" * the app says: {tag} is closing soon"
    answer = Client(server.url).call("displayMessage", wall, mount="/", wait=True, timeout=5)
    # (Pages of the tests before may still be going: only these two are looked at.)
    clients = {page.evaluate(f"{WIDGET}.client.clientId") for page in (ann, bob)}
    ours = [r for r in answer["results"] if r["client"] in clients]
    assert len(ours) == 2, answer
    assert all("error" not in r for r in ours), answer
    for page in (ann, bob):
        wait_for_line(page, wall)

    bob.context.close()
    wait_for_line(ann, f" * user {bob_name} has left the room")


def test_a_refused_call_shows_its_error_and_the_login_box_stays(
    server: RunningServer, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    open_chat(page, server.url, "websocket")
    page.fill("[name=username]", "x" * 40)
    page.click("[name=GO]")
    expect(page.locator("[name=problem]")).to_have_text("a username is 1 to 32 characters")
    expect(page.locator("[name=chooseBox]")).to_be_visible()
    error = page.evaluate(
        """() => Orbiter.Widget.get(document.getElementById('orbiter-live'))
             .callRemote('hidden').catch(e => [e.code, e.message])"""
    )
    assert error == [112, "ChatterElement exposes no method 'hidden'"]
    typed = page.evaluate(
        """() => Orbiter.Widget.get(document.getElementById('orbiter-live'))
             .callRemote('say', 'too early').catch(e => [e.code, e.type, e.message])"""
    )
    assert typed == [113, "PermissionError", "choose a username first"]


@pytest.mark.parametrize("transport", ["websocket", "xhr-polling"])
@pytest.mark.parametrize("network", ["cut", "vanish"])
def test_a_browser_that_reconnects_in_time_keeps_its_element(
    server: RunningServer,
    relay: Relay,
    new_page: Callable[[], Page],
    transport: str,
    network: str,
) -> None:
    """The page's network goes and comes back at once: its new connection gets its element.

    ``cut``: both ends reset, open again once the page knows (the server may or may
    not have seen the old connection go when the page is back: over polling it sees
    it at once only if a poll was waiting, else after sockjs.disconnect_delay).
    ``vanish``: only the page's end is reset, the server's stays open: the page is back
    while the old connection still holds the element, and takes it over; the old
    connection's end, when the server sees it, changes nothing.
    """
    ann, bob = new_page(), new_page()  # ann through a relay that can cut her connection
    ann_name, bob_name = f"ann{transport[:2]}{network[0]}", f"bob{transport[:2]}{network[0]}"
    open_chat(ann, relay.url, transport)
    open_chat(bob, server.url, "websocket")
    login(ann, ann_name)
    login(bob, bob_name)
    wait_for_line(ann, f" * user {bob_name} has joined the room")
    ann.evaluate(
        """() => {
          const w = Orbiter.Widget.get(document.getElementById('orbiter-live'));
          window.__resumed = [];
          window.__disconnects = 0;
          const attached = w.attached.bind(w);
          w.attached = (info) => { window.__resumed.push(info.resumed); attached(info); };
          w.client.on("disconnect", () => { window.__disconnects += 1; });
        }"""
    )

    if network == "cut":
        relay.cut()
        # Open again as soon as the page knows (a poll reset on a kept-alive connection
        # is sent again by Chromium: the relay refuses it until then).
        ann.wait_for_function("window.__disconnects >= 1", timeout=WAIT)
        relay.restore()
    else:
        relay.vanish()
    ann.wait_for_function("window.__resumed.length >= 1", timeout=WAIT)
    assert ann.evaluate("window.__resumed") == [True]
    relay.end_vanished()  # the server sees the old connection go (if it had not)
    say(bob, "still there?")
    wait_for_line(ann, f"{bob_name}: still there?")
    say(ann, "yes")
    wait_for_line(bob, f"{ann_name}: yes")
    # Past sockjs.disconnect_delay and the grace period: no late "has left" either.
    bob.wait_for_timeout(4500)
    shown = lines(bob)
    assert f" * user {ann_name} has left the room" not in shown
    assert shown.count(f" * user {ann_name} has joined the room") == 1
