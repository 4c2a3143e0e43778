"""The node's limits on STOMP connections, with stomp.py over a real TCP listener: each
exceeded by one gives the offender an ERROR naming the limit (then the end of its
connection, as STOMP's ERROR means), a counter at /api/stats, and nothing for anyone else.

- ``limits.publish_rate`` / ``publish_burst``: SENDs (topics and queues) of connections
  that are not app servers; an app server (passcode = ``server.api_key``) is not bound;
- ``limits.max_connections`` / ``max_connections_per_ip``: STOMP and native connections
  count together, in the node's one set of counts;
- ``limits.max_channels``: a SEND that would open one more channel stream (reading
  stores none: SUBSCRIBE and recovery are never refused by it).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import stomp

from tests.support.server import RunningServer
from tests.support.stomp_helpers import Collector, RawClient, connect, start_stomp_server
from tests.support.wsclient import NativeClient


def stats(srv: RunningServer) -> dict[str, Any]:
    request = urllib.request.Request(srv.url + "/api/stats", headers={"X-API-Key": "k"})
    with urllib.request.urlopen(request, timeout=5) as r:
        result: dict[str, Any] = json.loads(r.read())
    return result


def history(srv: RunningServer, channel: str) -> list[Any]:
    request = urllib.request.Request(
        f"{srv.url}/api/history?channel={channel}", headers={"X-API-Key": "k"}
    )
    with urllib.request.urlopen(request, timeout=5) as r:
        return [p["data"] for p in json.loads(r.read())["publications"]]


def refused(got: Collector, message: str) -> dict[str, str]:
    """The ERROR the broker sent (and then closed the connection); its headers and body."""
    assert got.wait(lambda: bool(got.errors)), "no ERROR frame"
    (error,) = got.errors
    assert error.headers["message"] == message
    assert got.disconnected.wait(5), "the connection stayed open after the ERROR"
    return {**error.headers, "body": error.body}


def still_works(conn: stomp.Connection, got: Collector, topic: str) -> None:
    receipt = f"ok-{time.monotonic_ns()}"
    conn.send(topic, "still here", receipt=receipt)
    assert got.wait(lambda: receipt in got.receipts)
    assert not got.errors


# ------------------------------------------------------------------ publish rate

RATE_TOML = """
[server]
api_key = "k"

[limits]
publish_rate = 1
publish_burst = 3
"""


@pytest.fixture(scope="module")
def rated() -> Iterator[tuple[RunningServer, int]]:
    srv, port = start_stomp_server(RATE_TOML)
    yield srv, port
    srv.stop()


def test_publish_rate_binds_sends_of_connections_that_are_not_app_servers(rated):
    srv, port = rated
    before = stats(srv)["counters"].get("limit_publish_rate", 0)
    browser, got = connect(port)  # no passcode: anonymous, held to the rules and limits
    other, got_other = connect(port)
    app, got_app = connect(port, passcode="k")  # an app server
    # A burst of three (a queue SEND is a publish too), then one too many.
    browser.send("/topic/chat:rate", "one", receipt="r1")
    browser.send("/queue/rate", "two", receipt="r2")
    browser.send("/topic/chat:rate", "three", receipt="r3")
    assert got.wait(lambda: len(got.receipts) == 3)
    browser.send("/topic/chat:rate", "four", receipt="r4")
    error = refused(got, "publishing too fast")
    assert error["receipt-id"] == "r4"
    assert "limits.publish_rate" in error["body"]
    assert "r4" not in got.receipts
    # Nothing refused was published; the others are not limited by it.
    still_works(other, got_other, "/topic/chat:rate")
    for n in range(10):
        app.send("/topic/chat:rate", f"app {n}")
    still_works(app, got_app, "/topic/chat:rate")
    published = history(srv, "chat:rate")
    assert published[:3] == ["one", "three", "still here"]
    assert "four" not in published
    assert len(published) == 3 + 11
    assert stats(srv)["counters"]["limit_publish_rate"] == before + 1
    assert srv.wait_for_log("publishing too fast")
    other.disconnect()
    app.disconnect()


# ------------------------------------------------------------------- connections


def connect_refused(port: int) -> dict[str, str]:
    """The ERROR of a connection the broker refuses as it is accepted; the socket then closes.

    A raw socket: stomp.py races a socket closed before its CONNECT is written (it may
    never report the ERROR), so the refused connection is read directly.
    """
    raw = RawClient(port)
    try:
        error = raw.next()
        assert error.command == "ERROR", error
        assert raw.wait_closed(), "the connection stayed open after the ERROR"
        return {"message": error.get("message") or "", "body": error.body.decode()}
    finally:
        raw.close()


async def test_stomp_and_native_connections_share_the_node_limits():
    srv, port = start_stomp_server("[server]\napi_key = 'k'\n[limits]\nmax_connections = 3\n")
    try:
        native = await NativeClient.open(srv.ws_url)
        first, got_first = connect(port)
        second, _ = connect(port)
        assert stats(srv)["counters"].get("limit_connections", 0) == 0
        # Three open (one native, two STOMP): a fourth of either kind is refused.
        error = connect_refused(port)
        assert error["message"] == "too many connections"
        assert "limits.max_connections" in error["body"]
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(srv.ws_url)
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 3003
        assert stats(srv)["counters"]["limit_connections"] == 2
        # The open ones are unharmed; a STOMP connection leaving makes room for a native one.
        still_works(first, got_first, "/queue/q")
        assert (await native.call("ping"))["result"] == {}
        second.disconnect()
        for _ in range(100):  # the broker releases the slot as the socket closes
            if stats(srv)["connections"] < 3:
                break
            await asyncio.sleep(0.05)
        assert stats(srv)["connections"] == 2
        late = await NativeClient.open(srv.ws_url)
        assert (await late.call("ping"))["result"] == {}
        await late.close()
        await native.close()
        first.disconnect()
    finally:
        srv.stop()


async def test_connections_per_ip_count_stomp_and_native_together():
    srv, port = start_stomp_server(
        "[server]\napi_key = 'k'\n[limits]\nmax_connections_per_ip = 2\n"
    )
    try:
        native = await NativeClient.open(srv.ws_url)
        first, got_first = connect(port)
        error = connect_refused(port)
        assert error["message"] == "too many connections"
        assert "limits.max_connections_per_ip" in error["body"]
        assert stats(srv)["counters"]["limit_connections_per_ip"] == 1
        still_works(first, got_first, "/queue/q")
        assert (await native.call("ping"))["result"] == {}
        await native.close()
        first.disconnect()
    finally:
        srv.stop()


# ---------------------------------------------------------------------- channels


def test_a_send_past_max_channels_is_an_error_naming_the_limit_and_readers_are_not():
    srv, port = start_stomp_server("[server]\napi_key = 'k'\n[limits]\nmax_channels = 2\n")
    try:
        app, got_app = connect(port, passcode="k")
        app.send("/topic/chat:a", "a", receipt="a")
        app.send("/topic/chat:b", "b", receipt="b")
        assert got_app.wait(lambda: len(got_app.receipts) == 2)
        sender, got = connect(port, passcode="k")
        sender.send("/topic/chat:c", "c", receipt="c")
        error = refused(got, "too many channels")
        assert error["receipt-id"] == "c"
        assert "limits.max_channels" in error["body"]
        # Reading stores no channel (max_channels counts streams stored): a recovery of a
        # channel never published and a plain SUBSCRIBE to a third channel are served.
        recovering = RawClient(port)
        recovering.connect()
        recovering.frame(
            "SUBSCRIBE",
            [
                ("id", "1"),
                ("destination", "/topic/chat:d"),
                ("orbiter-since", "0"),
                ("orbiter-epoch", "x"),
                ("receipt", "s"),
            ],
        )
        receipt = recovering.next()
        assert receipt.command == "RECEIPT"
        assert receipt.get("orbiter-recovered") == "false"
        assert receipt.get("orbiter-offset") == "0"
        late, got_late = connect(port)
        late.subscribe("/topic/chat:e", id="1", receipt="se")
        assert got_late.wait(lambda: "se" in got_late.receipts)
        assert not got_late.errors
        listener, got_listener = connect(port)
        listener.subscribe("/topic/chat:a", id="a", receipt="sa")
        assert got_listener.wait(lambda: "sa" in got_listener.receipts)
        assert stats(srv)["counters"]["limit_channels"] == 1
        still_works(app, got_app, "/topic/chat:a")
        assert history(srv, "chat:a") == ["a", "still here"]
        assert [m.body for m in got_listener.wait_messages(1)] == ["still here"]
        for c in (listener, late):
            c.disconnect()
        recovering.close()
        assert srv.wait_for_log("too many channels")
        app.disconnect()
    finally:
        srv.stop()
