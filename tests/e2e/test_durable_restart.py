"""A clean restart on the SQLite engine: clients resume where they were, on every transport.

Clients over the native WebSocket, ``/poll?since=``, SSE ``Last-Event-ID``,
STOMP ``orbiter-since`` and SockJS (xhr-polling) see some publications live and go away; more are
published, the server stops (SIGTERM) and starts again on the same data
directory, more are published; each client resumes with its position and gets
``recovered: true`` and exactly what it missed, then the next live publication,
nothing lost or doubled. A position from before the restart of the memory
engine is refused instead (the control: the test can fail).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from orbiter import AsyncClient
from tests.e2e.test_sockjs_native import PollingClient
from tests.support.server import RunningServer
from tests.support.sse_client import EventStream
from tests.support.stomp_helpers import _STOMP_PORT, RawClient
from tests.support.wsclient import NativeClient

CONFIG = """
[stomp]
listen = "127.0.0.1:0"
"""


class Servers:
    """Starts servers one after another on one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.current: RunningServer | None = None

    def start(self, engine: str = "sqlite") -> RunningServer:
        args = ("--engine", engine, "--data-dir", str(self.data_dir))
        self.current = RunningServer(CONFIG, args=args)
        assert self.current.wait_for_log("stomp listening on", 10)
        return self.current

    def restart(self, engine: str = "sqlite") -> RunningServer:
        assert self.current is not None
        assert self.current.stop() == 0  # a clean stop
        return self.start(engine)

    def stomp_port(self) -> int:
        assert self.current is not None
        match = _STOMP_PORT.search(self.current.log)
        assert match is not None
        return int(match.group(1))


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    servers = Servers(tmp_path / "data")
    yield servers
    if servers.current is not None:
        servers.current.stop()


async def _publish(server: RunningServer, channel: str, *items: str) -> list[dict[str, Any]]:
    async with AsyncClient(server.url) as api:
        return [await api.publish(channel, item) for item in items]


async def _poll(server: RunningServer, **query: Any) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/poll", params={k: str(v) for k, v in query.items()}) as response,
    ):
        assert response.status == 200
        result: dict[str, Any] = await response.json()
        return result


async def test_every_transport_resumes_across_a_clean_restart(servers: Servers) -> None:
    server = servers.start()
    # Each client sees one or two publications live, then goes.
    native = await NativeClient.open(server.ws_url)
    start = (await native.call("subscribe", channel="r:ws"))["result"]
    await _publish(server, "r:ws", "w1", "w2")
    seen = [await native.next_push(), await native.next_push()]
    assert [p["data"] for p in seen] == ["w1", "w2"]
    await native.close()

    await _publish(server, "r:poll", "p1", "p2")
    polled = await _poll(server, channel="r:poll", since=0)
    assert [p["data"] for p in polled["publications"]] == ["p1", "p2"]

    stream = await EventStream.open(f"{server.url}/connection/sse?channel={quote('r:sse')}")
    await stream.next()  # subscribed
    await _publish(server, "r:sse", "s1")
    assert [p["data"] for p in await stream.messages(1)] == ["s1"]
    await stream.close()
    last_event_id = stream.last_id

    stomp = RawClient(servers.stomp_port())
    assert stomp.connect().command == "CONNECTED"
    stomp.frame("SUBSCRIBE", [("id", "1"), ("destination", "/topic/r:stomp"), ("receipt", "r")])
    assert stomp.next().command == "RECEIPT"
    await _publish(server, "r:stomp", "t1")
    message = stomp.next()
    assert message.body == b"t1"
    stomp_offset, stomp_epoch = message.get("orbiter-offset"), message.get("orbiter-epoch")
    stomp.close()

    # Missed before the stop, and after the start.
    for channel in ("r:ws", "r:poll", "r:sse", "r:stomp"):
        await _publish(server, channel, "before")
    server = servers.restart()
    for channel in ("r:ws", "r:poll", "r:sse", "r:stomp"):
        await _publish(server, channel, "after")

    native = await NativeClient.open(server.ws_url)
    since = {"offset": seen[-1]["offset"], "epoch": start["epoch"]}
    resumed = (await native.call("subscribe", channel="r:ws", since=since))["result"]
    assert resumed["recovered"] is True
    assert [p["data"] for p in resumed["publications"]] == ["before", "after"]
    await _publish(server, "r:ws", "live")
    assert [p["data"] for p in await native.pushes_now(0.3)] == ["live"]
    await native.close()

    page = await _poll(server, channel="r:poll", since=polled["offset"], epoch=polled["epoch"])
    assert page["recoverable"] is True
    assert page["epoch"] == polled["epoch"]
    assert [(p["offset"], p["data"]) for p in page["publications"]] == [(3, "before"), (4, "after")]

    again = await EventStream.open(
        f"{server.url}/connection/sse?channel={quote('r:sse')}", last_event_id=last_event_id
    )
    opening = await again.next()
    assert opening.name == "subscribed"
    assert [c["recovered"] for c in opening.json()["channels"]] == [True]
    assert [p["data"] for p in await again.messages(2)] == ["before", "after"]
    await _publish(server, "r:sse", "live")
    assert [p["data"] for p in await again.messages(1)] == ["live"]
    with pytest.raises(TimeoutError):
        await again.next(timeout=0.3)  # nothing twice
    await again.close()

    stomp = RawClient(servers.stomp_port())
    assert stomp.connect().command == "CONNECTED"
    assert stomp_offset is not None
    assert stomp_epoch is not None
    stomp.frame(
        "SUBSCRIBE",
        [
            ("id", "1"),
            ("destination", "/topic/r:stomp"),
            ("orbiter-since", stomp_offset),
            ("orbiter-epoch", stomp_epoch),
            ("receipt", "r"),
        ],
    )
    missed = [stomp.next(), stomp.next()]
    assert [f.body for f in missed] == [b"before", b"after"]
    receipt = stomp.next()
    assert receipt.command == "RECEIPT"
    assert receipt.get("orbiter-recovered") == "true"
    await _publish(server, "r:stomp", "live")
    assert stomp.next().body == b"live"
    stomp.close()


async def test_the_memory_engine_tells_a_resuming_client_it_cannot(servers: Servers) -> None:
    server = servers.start("memory")
    (pub,) = await _publish(server, "m:ws", "m1")
    server = servers.restart("memory")
    native = await NativeClient.open(server.ws_url)
    since = {"offset": pub["offset"], "epoch": pub["epoch"]}
    resumed = (await native.call("subscribe", channel="m:ws", since=since))["result"]
    assert resumed["recovered"] is False
    await native.close()


async def test_sockjs_resumes_across_a_clean_restart(servers: Servers) -> None:
    server = servers.start()
    client = PollingClient(server.url)
    await client.open()
    assert "result" in await client.call("connect")
    start = (await client.call("subscribe", channel="r:sockjs"))["result"]
    await _publish(server, "r:sockjs", "k1")
    seen = await client.next(lambda m: m.get("push") == "pub")
    assert seen["data"] == "k1"
    await _publish(server, "r:sockjs", "before")
    server = servers.restart()
    await _publish(server, "r:sockjs", "after")

    again = PollingClient(server.url)
    await again.open()
    assert "result" in await again.call("connect")
    since = {"offset": seen["offset"], "epoch": start["epoch"]}
    resumed = (await again.call("subscribe", channel="r:sockjs", since=since))["result"]
    assert resumed["recovered"] is True
    assert [p["data"] for p in resumed["publications"]] == ["before", "after"]
    await _publish(server, "r:sockjs", "live")
    live = await again.next(lambda m: m.get("push") == "pub")
    assert live["data"] == "live"
    assert not [m for m in again.inbox if m.get("push") == "pub"]  # nothing twice
