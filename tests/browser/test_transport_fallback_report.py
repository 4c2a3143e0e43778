"""orbiter.js reports its transport fallbacks: in Chromium, a page whose WebSocket cannot
connect (a proxy in between refuses the handshake) falls back to xhr-streaming, and the
server's debug log and ``/metrics`` show that fallback, with the client's id; a page whose
WebSocket connects reports nothing."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from playwright.sync_api import Page
from prometheus_client.parser import text_string_to_metric_families

from tests.support.server import RunningServer
from tests.support.websocket_blocker import WebSocketBlocker

#: A client of orbiter.js on this page's origin, with the default transports; resolves
#: once connected with its transport and client id.
CONNECT = """() => new Promise((resolve) => {
  const client = new Orbiter.Client(location.origin);
  window.testClient = client;
  client.on("connect", ({client: id}) => resolve({transport: client.transport, client: id}));
})"""


#: The same client, disconnected and connected again; resolves like CONNECT.
RECONNECT = """() => new Promise((resolve) => {
  const client = window.testClient;
  client.on("connect", ({client: id}) => resolve({transport: client.transport, client: id}));
  client.disconnect();
  client.connect();
})"""


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    srv = RunningServer('[log]\nlevel = "debug"\nformat = "json"\n', args=("--engine", "memory"))
    yield srv
    srv.stop()


@pytest.fixture
def blocker(server: RunningServer) -> Iterator[WebSocketBlocker]:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    proxy = WebSocketBlocker(host, int(port))
    yield proxy
    proxy.close()


def _fallback_lines(server: RunningServer) -> list[dict[str, Any]]:
    lines = (orjson.loads(line) for line in list(server.lines) if line.startswith("{"))
    return [line for line in lines if line.get("event") == "fallback"]


def _fallbacks(server: RunningServer) -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    counts = {}
    for family in text_string_to_metric_families(text):
        if family.name == "orbiter_transport_fallbacks":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    labels = sample.labels
                    counts[labels["from_transport"], labels["to_transport"]] = sample.value
    return counts


def _open(page: Page, url: str) -> dict[str, Any]:
    page.goto(url + "/")
    page.wait_for_function("() => window.Orbiter !== undefined")
    connected: dict[str, Any] = page.evaluate(CONNECT)
    return connected


def test_a_blocked_websocket_falls_back_and_the_server_logs_and_counts_it(
    server: RunningServer, blocker: WebSocketBlocker, new_page: Callable[[], Page]
) -> None:
    direct = _open(new_page(), server.url)  # WebSocket gets through: nothing to report
    assert direct["transport"] == "websocket"
    assert _fallbacks(server) == {}

    page = new_page()
    blocked = _open(page, blocker.url)
    assert blocked["transport"] == "xhr-streaming"
    assert blocker.blocked >= 1

    deadline = time.monotonic() + 10
    while not _fallback_lines(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    [line] = _fallback_lines(server)
    assert line["level"] == "DEBUG"
    assert line["client"] == blocked["client"]
    assert line["ip"] == "127.0.0.1"
    assert line["transport"] == "xhr-streaming"
    assert line["chain"] == "websocket>xhr-streaming"
    assert line["reasons"].startswith("websocket: closed 1006")
    assert _fallbacks(server) == {("websocket", "xhr-streaming"): 1.0}

    # The report went with that connect only: connecting again, over the transport that
    # worked, reports nothing more.
    again = page.evaluate(RECONNECT)
    assert again["transport"] == "xhr-streaming"
    assert again["client"] != blocked["client"]
    time.sleep(0.3)
    assert [line["client"] for line in _fallback_lines(server)] == [blocked["client"]]
    assert _fallbacks(server) == {("websocket", "xhr-streaming"): 1.0}
