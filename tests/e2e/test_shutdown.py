"""A graceful shutdown, as docs/deploy.md describes it: two nodes on one Redis (a load
balancer's pool), node A gets SIGTERM. Its clients are told to go (native WebSocket close
1001 "server shutting down", SSE ``event: disconnect`` with code 1001, a held long poll
answered at once), A exits 0 within the bound, /health/ready on B stays 200, and a client
following the rule for 1001 (reconnect, with its position) comes back on node B and
recovers exactly what was published while it moved."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import aiohttp
import orjson
import pytest

from orbiter import AsyncClient
from orbiter.protocol.native import DisconnectCode
from tests.support.redis_server import RedisServer
from tests.support.server import RunningServer
from tests.support.sse_client import EventStream
from tests.support.wsclient import NativeClient

#: Seconds node A may take to stop with its clients told (systemd's TimeoutStopSec in
#: docs/deploy.md is far above it).
STOP_BOUND = 10.0


@pytest.fixture
def pool() -> Iterator[tuple[RunningServer, RunningServer]]:
    redis = RedisServer()
    nodes: list[RunningServer] = []
    try:
        for _ in range(2):
            nodes.append(RunningServer(args=("--engine", redis.url)))
        yield nodes[0], nodes[1]
    finally:
        for node in nodes:
            node.stop()
        redis.stop()


async def test_sigterm_tells_every_client_and_they_resume_on_another_node(
    pool: tuple[RunningServer, RunningServer],
) -> None:
    a, b = pool
    native = await NativeClient.open(a.ws_url)
    start = (await native.call("subscribe", channel="news"))["result"]
    stream = await EventStream.open(f"{a.url}/connection/sse?channel=feed")
    await stream.next()  # the stream's opening event
    async with AsyncClient(b.url) as api:
        first = await api.publish("news", "before")
    assert (await native.next_push())["data"] == "before"

    async with aiohttp.ClientSession() as http:
        poll = asyncio.create_task(_poll(http, f"{a.url}/poll?channel=polled&since=0"))
        await asyncio.sleep(0.3)  # held by the server now
        began = time.monotonic()
        stopping = asyncio.create_task(asyncio.to_thread(a.stop))

        await asyncio.wait_for(native.closed.wait(), STOP_BOUND)
        assert native.ws.close_code == 1001
        assert int(DisconnectCode.SHUTDOWN) == 1001
        assert native.close_reason == "server shutting down"
        assert DisconnectCode.SHUTDOWN.reconnect
        bye = await stream.next()
        assert (bye.name, bye.json()["code"], bye.json()["reconnect"]) == ("disconnect", 1001, True)
        status, _ = await asyncio.wait_for(poll, STOP_BOUND)
        assert status == 200  # answered, not cut: the poller polls again, elsewhere
        assert await stopping == 0
        assert time.monotonic() - began < STOP_BOUND
        assert "stopped" in a.log
        assert "Traceback" not in a.log

        # The pool's other node is ready, and takes what is published meanwhile.
        async with http.get(b.url + "/health/ready") as ready:
            assert ready.status == 200
    async with AsyncClient(b.url) as api:
        for i in range(3):
            await api.publish("news", f"while moving {i}")

    again = await NativeClient.open(b.ws_url)
    try:
        since = {"offset": first["offset"], "epoch": start["epoch"]}
        resumed = (await again.call("subscribe", channel="news", since=since))["result"]
        assert resumed["recovered"] is True
        assert [p["data"] for p in resumed["publications"]] == [
            f"while moving {i}" for i in range(3)
        ]
    finally:
        await again.close()
        await native.close()
        await stream.close()


async def _poll(http: aiohttp.ClientSession, url: str) -> tuple[int, object]:
    async with http.get(url) as answer:
        return answer.status, orjson.loads(await answer.read())
