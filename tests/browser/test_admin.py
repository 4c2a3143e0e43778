"""The admin dashboard at /admin in Chromium: the key asked and kept in the tab only, the live
numbers changing as clients connect and the app server publishes, the lists, the actions
(publish, wall, unsubscribe, disconnect); and README's screenshot (docs/admin.png)."""

from __future__ import annotations

import http.client
import json
import struct
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from orbiter.client import Client
from tests.browser.conftest import WAIT
from tests.support.redis_server import RedisServer
from tests.support.server import RunningServer

KEY = "dashboard-key"
ROOM = "chat:lobby"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "admin.png"

#: A page's raw native WebSocket client: connects as ``user`` and subscribes to ``channel``;
#: keeps what it is pushed and how it was closed in ``window.seen``.
CLIENT = """([user, channel]) => new Promise((resolve, reject) => {
  window.seen = {pushes: [], close: null};
  const ws = new WebSocket(`ws://${location.host}/connection/websocket`);
  ws.onopen = () => {
    ws.send(JSON.stringify({id: 1, op: "connect", key: `${user}, 1, /admin-test`}));
    ws.send(JSON.stringify({id: 2, op: "subscribe", channel}));
  };
  ws.onmessage = (event) => {
    for (const line of event.data.split("\\n")) {
      const message = JSON.parse(line);
      if (message.push) window.seen.pushes.push(message);
      if (message.id === 2) resolve(true);
      if (message.error) reject(new Error(JSON.stringify(message.error)));
    }
  };
  ws.onclose = (event) => { window.seen.close = [event.code, event.reason]; };
})"""


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    srv = RunningServer(f'[server]\napi_key = "{KEY}"\n')
    yield srv
    srv.stop()


def _number(page: Page, element: str) -> float:
    return float(page.locator(f"#{element}").inner_text())


def _client_page(new_page: Callable[[], Page], server: RunningServer, user: str) -> Page:
    page = new_page()
    page.goto(server.url + "/static/favicon.svg")  # this origin, for the WebSocket
    page.evaluate(CLIENT, [user, ROOM])
    return page


def _sse(server: RunningServer) -> http.client.HTTPConnection:
    """An SSE subscriber held open (another transport in the lists)."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/connection/sse?channel=chat%3Alobby")
    assert conn.getresponse().status == 200
    return conn


def _sign_in(page: Page, server: RunningServer) -> None:
    page.goto(server.url + "/admin")
    page.fill("#key", KEY)
    page.click("#login-form button")
    page.wait_for_selector("#feed-state.live")


def test_the_key_is_asked_and_kept_in_the_tab_only(
    new_page: Callable[[], Page], server: RunningServer
) -> None:
    page = new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(server.url + "/admin")
    assert page.locator("#login").is_visible()
    page.fill("#key", "not-the-key")
    page.click("#login-form button")
    page.wait_for_function("() => document.querySelector('#login-error').textContent !== ''")
    assert "API key" in page.locator("#login-error").inner_text()
    assert not page.locator("#dashboard").is_visible()

    _sign_in(page, server)
    assert page.evaluate("() => sessionStorage.getItem('orbiter-admin-key')") == KEY
    assert page.evaluate("() => localStorage.length") == 0
    assert not [url for url in requests if KEY in url]  # never in a URL
    page.reload()  # the tab keeps it: straight to the dashboard
    page.wait_for_selector("#feed-state.live")
    page.click("#logout")
    assert page.locator("#login").is_visible()
    assert page.evaluate("() => sessionStorage.getItem('orbiter-admin-key')") is None


def test_numbers_lists_and_actions(new_page: Callable[[], Page], server: RunningServer) -> None:
    admin = new_page()
    _sign_in(admin, server)
    admin.wait_for_function(
        "() => document.querySelector('#t-connections').textContent !== '\\u2013'"
    )
    before = _number(admin, "t-connections")
    published = _number(admin, "t-published")
    # One node: no cluster line, no nodes table.
    assert admin.locator("#cluster").is_hidden()
    assert admin.locator("#cluster-state").inner_text() == ""

    ann = _client_page(new_page, server, "ann")
    bob = _client_page(new_page, server, "bob")
    sse = _sse(server)
    try:
        admin.wait_for_function(
            f"() => Number(document.querySelector('#t-connections').textContent) >= {before + 3}"
        )
        assert "sse 1" in admin.locator("#t-transports").inner_text()
        app_server = Client(server.url, api_key=KEY)
        for i in range(20):
            app_server.publish(ROOM, {"nick": "deploy-bot", "text": f"build {i}"})
        admin.wait_for_function(
            f"() => Number(document.querySelector('#t-published').textContent) >= {published + 20}"
        )
        admin.wait_for_function(
            "() => Number(document.querySelector('#t-delivered').textContent) > 0"
        )
        # The lists: the room with its three subscribers, each connection with its transport.
        # (the lists are fetched every 2 s: a row may first show a fetch made before the
        # last subscribe, and is then brought up to date)
        admin.wait_for_function(
            f"() => document.querySelector(\"#channels tr[data-channel='{ROOM}'] td:nth-child(2)\")"
            "?.textContent === '3'"
        )
        admin.wait_for_function(
            "() => [...document.querySelectorAll('#connections td:nth-child(2)')]"
            ".map((td) => td.textContent).includes('ann')"
        )
        transports = admin.locator("#connections td:nth-child(3)").all_inner_texts()
        assert transports.count("websocket") >= 2
        assert "sse" in transports
        this_node = admin.locator("#node").inner_text().removeprefix("node ")
        holders = admin.locator("#connections td:nth-child(8)").all_inner_texts()
        assert holders == [this_node] * len(transports)  # one node: each row is its own
        admin.locator(f"#channels tr[data-channel='{ROOM}'] button").click()
        admin.wait_for_function("() => !document.querySelector('#presence').hidden")
        assert "clients" in admin.locator("#presence-summary").inner_text()

        # Publish and wall from the dashboard reach the subscribers.
        admin.fill("#pub-channel", ROOM)
        admin.fill("#pub-data", '{"nick": "admin", "text": "from the dashboard"}')
        admin.click("#publish-form button")
        ann.wait_for_function(
            "() => window.seen.pushes.some((p) => p.data && p.data.text === 'from the dashboard')"
        )
        admin.fill("#wall-text", "maintenance at five")
        admin.click("#wall-form button")
        admin.wait_for_function(
            "() => document.querySelector('#action-result').textContent.startsWith('wall')"
        )

        # Unsubscribe bob: he is told; disconnect ann by her row's button: closed 3503.
        admin.fill("#unsub-user", "bob")
        admin.fill("#unsub-channel", ROOM)
        admin.click("#unsubscribe-form button")
        bob.wait_for_function(
            "() => window.seen.pushes.some((p) => p.push === 'unsubscribed')", timeout=WAIT
        )
        ann_row = admin.locator("#connections tr", has_text="ann")
        ann_row.locator("button").click()
        ann.wait_for_function("() => window.seen.close !== null")
        assert ann.evaluate("() => window.seen.close") == [3503, "disconnected by an administrator"]
        admin.wait_for_function(
            "() => ![...document.querySelectorAll('#connections td:nth-child(2)')]"
            ".map((td) => td.textContent).includes('ann')"
        )
    finally:
        sse.close()


def test_the_list_shows_every_node_and_acts_on_the_other(
    new_page: Callable[[], Page],
) -> None:
    """Two nodes on one real redis-server: the dashboard of node A lists a page's
    connection held by node B, with B in its node column, and its disconnect button
    closes it there; its tiles sum both nodes (A holds one page, B two and B's
    publications), its header says both answered, its nodes table has each node's row."""
    redis = RedisServer()
    nodes: list[RunningServer] = []
    try:
        for _ in range(2):
            config = f'[server]\napi_key = "{KEY}"\n'
            nodes.append(RunningServer(config, args=("--engine", redis.url)))
        a, b = nodes
        dee = _client_page(new_page, b, "dee")
        _client_page(new_page, b, "fay")
        _client_page(new_page, a, "eve")
        app_server = Client(b.url, api_key=KEY)
        for i in range(7):
            app_server.publish("news:b", {"i": i})
        request = urllib.request.Request(
            b.url + "/api/admin/connections", headers={"X-API-Key": KEY}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            node_b = json.load(answer)["node"]
        admin = new_page()
        _sign_in(admin, a)
        node_a = admin.locator("#node").inner_text().removeprefix("node ")
        assert node_a != node_b
        row = admin.locator("#connections tr", has_text="dee")
        row.wait_for()
        assert row.locator("td").nth(7).inner_text() == node_b
        assert "on 2 nodes" in admin.locator("#connections-total").inner_text()
        # The tiles: both nodes' numbers summed (A alone holds 1 connection, B 2, and
        # the 7 publications were made on B), not the node serving the page.
        admin.wait_for_function(
            "() => document.querySelector('#t-connections').textContent === '3'"
        )
        assert admin.locator("#t-transports").inner_text() == "websocket 3"
        assert _number(admin, "t-published") >= 7
        assert admin.locator("#cluster-state").inner_text() == "2 of 2 nodes answered"
        assert admin.locator("#cluster").is_visible()
        rows = admin.locator("#nodes tbody tr")
        assert rows.count() == 2
        by_node = {
            rows.nth(i).get_attribute("data-node"): rows.nth(i).locator("td").nth(1).inner_text()
            for i in range(2)
        }
        assert by_node == {node_a: "1", node_b: "2"}
        row.locator("button").click()
        dee.wait_for_function("() => window.seen.close !== null")
        assert dee.evaluate("() => window.seen.close") == [3503, "disconnected by an administrator"]
        admin.wait_for_function(
            "() => ![...document.querySelectorAll('#connections td:nth-child(2)')]"
            ".map((td) => td.textContent).includes('dee')"
        )
    finally:
        for server in nodes:
            server.stop()
        redis.close()


def test_screenshot_for_the_readme(browser: Browser) -> None:
    """A fresh server with a few clients and steady publishing; the image: docs/admin.png."""
    srv = RunningServer(f'[server]\napi_key = "{KEY}"\n')
    contexts = []
    try:
        context = browser.new_context(
            viewport={"width": 1100, "height": 1010}, color_scheme="light", locale="en-US"
        )
        context.set_default_timeout(WAIT)
        contexts.append(context)
        pages = []
        for user in ("ann", "bob", "cy"):
            page = context.new_page()
            page.goto(srv.url + "/static/favicon.svg")
            page.evaluate(CLIENT, [user, ROOM])
            pages.append(page)
        streams = [_sse(srv) for _ in range(2)]
        admin = context.new_page()
        _sign_in(admin, srv)
        app_server = Client(srv.url, api_key=KEY)
        for second in range(12):
            for i in range(5 + 3 * second):
                app_server.publish(ROOM, {"nick": "deploy-bot", "text": f"line {i}"})
            app_server.publish(f"news:{second % 3}", {"headline": second})
            admin.wait_for_timeout(1000)
        admin.wait_for_function(
            "() => document.querySelectorAll('#connections tbody tr').length === 5"
        )
        admin.evaluate("() => document.activeElement && document.activeElement.blur()")
        data = admin.screenshot()
        width, height = struct.unpack(">II", data[16:24])
        assert (width, height) == (1100, 1010)
        assert len(data) > 30_000  # tiles, charts and tables: not a blank page
        SCREENSHOT.write_bytes(data)
        for stream in streams:
            stream.close()
    finally:
        for context in contexts:
            context.close()
        srv.stop()
