"""STOMP in Chromium: the unmodified npm ``@stomp/stompjs`` over ``/stomp``, and orbiter.js's
seed-API ``STOMPClient`` over WebSocket (``/stomp``) and SockJS (``/stomp/sockjs``,
with the unmodified npm ``sockjs-client``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.e2e.test_stompjs_node import SCENARIO, STOMP_TOML, check_scenario
from tests.support.npm import npm_file
from tests.support.server import RunningServer
from tests.support.stomp_helpers import start_stomp_server

STOMPJS_BUNDLE = "@stomp/stompjs/bundles/stomp.umd.js"
SOCKJS_CLIENT = "sockjs-client/dist/sockjs.min.js"


@pytest.fixture(scope="module")
def broker() -> Iterator[RunningServer]:
    srv, _ = start_stomp_server(stomp_toml=STOMP_TOML)
    yield srv
    srv.stop()


def open_page(new_page: Callable[[], Page], srv: RunningServer) -> Page:
    """A real page of the server's origin (Chromium blocks local-network sockets otherwise)."""
    page = new_page()
    page.goto(srv.url + "/stomp/sockjs")
    page.add_script_tag(url=srv.url + "/static/orbiter.js")
    page.wait_for_function("typeof STOMPClient === 'function'")
    return page


def test_stompjs_in_chromium(broker: RunningServer, new_page: Callable[[], Page]) -> None:
    page = open_page(new_page, broker)
    page.add_script_tag(path=npm_file(STOMPJS_BUNDLE))
    topic = "/topic/chat:stompjs-browser"
    args = {
        "wsUrl": broker.url.replace("http://", "ws://") + "/stomp",
        "httpUrl": broker.url,
        "topic": topic,
        "queue": "/queue/stompjs-browser",
    }
    log = page.evaluate(f"(args) => ({SCENARIO})({{Client: StompJs.Client, ...args}})", args)
    check_scenario(log, topic)


@pytest.mark.parametrize("sockjs_transport", ["websocket", "xhr-streaming"])
def test_stompjs_over_sockjs_in_chromium(
    broker: RunningServer, new_page: Callable[[], Page], sockjs_transport: str
) -> None:
    """How Spring and RabbitMQ Web-STOMP pages connect: stompjs over sockjs-client."""
    page = open_page(new_page, broker)
    page.add_script_tag(path=npm_file(STOMPJS_BUNDLE))
    page.add_script_tag(path=npm_file(SOCKJS_CLIENT))
    # Force one SockJS transport for this run.
    page.evaluate(
        "(t) => { const S = window.SockJS; window.SockJS = function (url) {"
        " return new S(url, null, {transports: [t]}); }; }",
        sockjs_transport,
    )
    topic = f"/topic/chat:stompjs-sockjs-{sockjs_transport}"
    args = {
        "sockjsUrl": broker.url + "/stomp/sockjs",
        "httpUrl": broker.url,
        "topic": topic,
        "queue": f"/queue/stompjs-sockjs-{sockjs_transport}",
    }
    log = page.evaluate(f"(args) => ({SCENARIO})({{Client: StompJs.Client, ...args}})", args)
    check_scenario(log, topic, subprotocol="sockjs")


SEED_PAGE = """
async ({options, httpUrl}) => await new Promise((resolve, reject) => {
  // The seed's TurboGears page, as written there, plus an HTTP publish from the app side.
  const seen = {opened: false, connected: null, messages: [], receipts: []};
  const stomp = new STOMPClient(options || undefined);
  const timer = setTimeout(() => reject(new Error("timed out: " + JSON.stringify(seen))), 20000);
  stomp.onopen = () => { seen.opened = true; };
  stomp.onconnectedframe = (frame) => {
    seen.connected = frame.headers.version;
    stomp.subscribe("/topic/chat");
    stomp.send("hello from the seed page", "/topic/chat", {receipt: "sent"});
  };
  stomp.onreceiptframe = (frame) => {
    seen.receipts.push(frame.headers["receipt-id"]);
    fetch(httpUrl + "/api/publish", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({channel: "chat", data: {text: "from the app server", n: 1}})});
  };
  stomp.onmessageframe = (frame) => {
    seen.messages.push({body: frame.body, type: frame.headers["content-type"],
                        destination: frame.headers.destination});
    if (seen.messages.length === 2) stomp.send("x", "/nowhere");
  };
  stomp.onerrorframe = (frame) => { seen.error = frame.headers.message + ": " + frame.body; };
  stomp.onclose = (code) => { clearTimeout(timer); seen.closeCode = code; resolve(seen); };
  stomp.connect("localhost", 61613);
})
"""


def check_seed_page(seen: dict[str, Any]) -> None:
    assert seen["opened"] is True
    assert seen["connected"] == "1.2"
    assert seen["receipts"] == ["sent"]
    assert seen["messages"] == [
        {
            "body": "hello from the seed page",
            "type": "text/plain;charset=utf-8",
            "destination": "/topic/chat",
        },
        {
            "body": '{"text":"from the app server","n":1}',
            "type": "application/json",
            "destination": "/topic/chat",
        },
    ]
    assert seen["error"].startswith("unknown destination: unknown destination '/nowhere'")
    assert isinstance(seen["closeCode"], int)


def test_seed_stomp_client_over_websocket(
    broker: RunningServer, new_page: Callable[[], Page]
) -> None:
    page = open_page(new_page, broker)
    check_seed_page(page.evaluate(SEED_PAGE, {"options": None, "httpUrl": broker.url}))


@pytest.mark.parametrize("sockjs_transport", ["websocket", "xhr-streaming", "xhr-polling"])
def test_seed_stomp_client_over_sockjs(
    broker: RunningServer, new_page: Callable[[], Page], sockjs_transport: str
) -> None:
    page = open_page(new_page, broker)
    page.add_script_tag(path=npm_file(SOCKJS_CLIENT))
    page.wait_for_function("typeof SockJS === 'function'")
    options = {"transport": "sockjs", "sockjs": {"transports": [sockjs_transport]}}
    check_seed_page(page.evaluate(SEED_PAGE, {"options": options, "httpUrl": broker.url}))
