"""Orbited.TCPSocket reports its transport fallbacks as the Client does: in Chromium, a page
whose WebSocket to ``/tcp`` is refused by a proxy in between falls back to SockJS
(xhr-streaming), still reaches a real echo backend, and the server logs that fallback once
(DEBUG, ``event=fallback``) and counts it once in ``orbiter_transport_fallbacks_total``; a
TCPSocket whose WebSocket gets through reports nothing."""

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
from tests.support.tcp_servers import ThreadedEcho
from tests.support.websocket_blocker import WebSocketBlocker

#: An Orbited.TCPSocket on this page's origin to 127.0.0.1:port: sends "ping", resolves
#: with its transport once the echo came back.
ECHO = """(port) => new Promise((resolve, reject) => {
  const sock = new Orbited.TCPSocket();
  let got = "";
  sock.onopen = () => sock.send("ping");
  sock.onread = (text) => {
    got += text;
    if (got === "ping") { resolve(sock._channel.transport); sock.close(); }
  };
  sock.onclose = (code) => { if (got !== "ping") reject(new Error("closed " + code)); };
  sock.open("127.0.0.1", port);
})"""


@pytest.fixture(scope="module")
def server(echo: ThreadedEcho) -> Iterator[RunningServer]:
    config = (
        f'[log]\nlevel = "debug"\nformat = "json"\n[[tcp.access]]\nto = "127.0.0.1:{echo.port}"\n'
    )
    srv = RunningServer(config, args=("--engine", "memory"))
    yield srv
    srv.stop()


@pytest.fixture
def blocker(server: RunningServer) -> Iterator[WebSocketBlocker]:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    proxy = WebSocketBlocker(host, int(port))
    yield proxy
    proxy.close()


def _lines(server: RunningServer, event: str) -> list[dict[str, Any]]:
    lines = (orjson.loads(line) for line in list(server.lines) if line.startswith("{"))
    return [line for line in lines if line.get("event") == event]


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


def _echo(page: Page, url: str, port: int) -> str:
    page.goto(url + "/")
    page.wait_for_function("() => window.Orbited !== undefined && !!Orbited.TCPSocket")
    transport: str = page.evaluate(ECHO, port)
    return transport


def test_a_blocked_websocket_makes_a_tcpsocket_fall_back_and_it_is_counted_once(
    server: RunningServer,
    blocker: WebSocketBlocker,
    echo: ThreadedEcho,
    new_page: Callable[[], Page],
) -> None:
    assert _echo(new_page(), server.url, echo.port) == "websocket"  # nothing to report
    assert _fallbacks(server) == {}
    assert _lines(server, "fallback") == []

    assert _echo(new_page(), blocker.url, echo.port) == "xhr-streaming"
    assert blocker.blocked >= 1
    deadline = time.monotonic() + 10
    while not _lines(server, "fallback") and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # a second line, if there were one, would be here by now
    [line] = _lines(server, "fallback")
    assert line["level"] == "DEBUG"
    assert line["client"].startswith("tcp:")
    assert line["ip"] == "127.0.0.1"
    assert (line["transport"], line["chain"]) == ("xhr-streaming", "websocket>xhr-streaming")
    assert line["reasons"].startswith("websocket: closed 1006")
    assert _fallbacks(server) == {("websocket", "xhr-streaming"): 1.0}
    assert _lines(server, "fallback_ignored") == []
