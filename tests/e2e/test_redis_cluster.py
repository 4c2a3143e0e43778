"""Two ``orbiter serve`` processes on one Redis (``--engine redis://...``) behave as one server.

A channel's subscribers on both nodes get every publication once, in one
order (the offsets), whichever node it was published to; a client that goes
away on one node and comes back on the other recovers exactly what it missed;
presence lists the clients of both nodes. Against a real ``redis-server``
started for the test (``tests/support/redis_server.py``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from orbiter import AsyncClient
from orbiter.client import OrbiterError
from orbiter.ports import free_port
from tests.support.redis_server import RedisServer
from tests.support.server import RunningServer, serve_to_its_end
from tests.support.wsclient import NativeClient


@pytest.fixture
def nodes() -> Iterator[tuple[RunningServer, RunningServer]]:
    redis = RedisServer()
    started: list[RunningServer] = []
    try:
        for _ in range(2):
            started.append(RunningServer(args=("--engine", redis.url)))
        yield started[0], started[1]
    finally:
        for server in started:
            server.stop()
        redis.close()


async def _pushes(client: NativeClient, count: int) -> list[dict[str, Any]]:
    return [await client.next_push() for _ in range(count)]


async def test_subscribers_on_both_nodes_get_every_publication_once_in_one_order(
    nodes: tuple[RunningServer, RunningServer],
) -> None:
    a, b = nodes
    on_a = await NativeClient.open(a.ws_url)
    on_b = await NativeClient.open(b.ws_url)
    try:
        start = (await on_a.call("subscribe", channel="news"))["result"]
        await on_b.call("subscribe", channel="news")
        async with AsyncClient(a.url) as api_a, AsyncClient(b.url) as api_b:
            # Both nodes publish at once: 40 each, interleaved.
            answers = await asyncio.gather(
                *(
                    api.publish("news", f"{name}{i}")
                    for i in range(40)
                    for name, api in (("a", api_a), ("b", api_b))
                )
            )
        assert sorted(answer["offset"] for answer in answers) == list(range(1, 81))
        got_a, got_b = await _pushes(on_a, 80), await _pushes(on_b, 80)
        assert [p["offset"] for p in got_a] == list(range(1, 81))
        assert [p["data"] for p in got_a] == [p["data"] for p in got_b]
        assert sorted(p["data"] for p in got_a) == sorted(
            f"{name}{i}" for i in range(40) for name in "ab"
        )
        assert await on_a.pushes_now(0.2) == []  # nothing twice
        assert await on_b.pushes_now(0.0) == []

        for client in (on_a, on_b):  # presence (on for chat:*): both nodes' clients
            await client.call("subscribe", channel="chat:room")
        async with AsyncClient(b.url) as api_b:
            presence = await api_b.presence("chat:room")
        assert presence["clients"] == 2

        # A client of node A comes back on node B: it recovers what it missed there.
        await on_a.close()
        async with AsyncClient(a.url) as api_a:
            for i in range(3):
                await api_a.publish("news", f"missed{i}")
        again = await NativeClient.open(b.ws_url)
        since = {"offset": got_a[-1]["offset"], "epoch": start["epoch"]}
        resumed = (await again.call("subscribe", channel="news", since=since))["result"]
        assert resumed["recovered"] is True
        assert [p["data"] for p in resumed["publications"]] == ["missed0", "missed1", "missed2"]
        await again.close()
    finally:
        await on_a.close()
        await on_b.close()


async def test_a_redis_restart_mid_stream_never_answers_ok_for_a_lost_publication() -> None:
    redis = RedisServer()
    server = RunningServer(args=("--engine", redis.url))
    try:
        client = await NativeClient.open(server.ws_url)
        start = (await client.call("subscribe", channel="s"))["result"]
        async with AsyncClient(server.url) as api:
            await api.publish("s", "before")
            assert (await client.next_push())["data"] == "before"
            redis.stop()
            with pytest.raises(OrbiterError) as failed:  # an error, never OK
                await api.publish("s", "during")
            assert failed.value.status == 503
            assert "Redis" in failed.value.message
            for _ in range(100):  # the node reports its engine down
                if (await api.stats())["engine_up"] == 0:
                    break
                await asyncio.sleep(0.02)
            assert (await api.stats())["engine_up"] == 0
            redis.start()
            answer: dict[str, Any] = {}
            for _ in range(100):  # the node reconnects (backoff up to 2 s)
                try:
                    answer = await api.publish("s", "after")
                    break
                except OrbiterError:
                    await asyncio.sleep(0.05)
            assert answer["offset"] == 1  # the channel's stream began again, in a new epoch
            assert (await api.stats())["engine_failures"] >= 1
            # Its subscriber is not handed offset 1 as if it had it already: it is closed
            # (3004), and coming back with its position it is told it cannot recover.
            await asyncio.wait_for(client.closed.wait(), 5)
            assert "lost" in client.close_reason
            again = await NativeClient.open(server.ws_url)
            since = {"offset": 1, "epoch": start["epoch"]}
            resumed = (await again.call("subscribe", channel="s", since=since))["result"]
            assert resumed["recovered"] is False
            assert resumed["epoch"] == answer["epoch"] != start["epoch"]
            await api.publish("s", "live")
            assert (await again.next_push())["data"] == "live"  # live delivery goes on
            await again.close()
        await client.close()
    finally:
        server.stop()
        redis.close()


def test_serve_without_its_redis_stops_with_one_line_saying_so() -> None:
    port = free_port()  # nothing listens there
    done = serve_to_its_end("--engine", f"redis://127.0.0.1:{port}/0")
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"orbiter: cannot start: cannot reach Redis at redis://127.0.0.1:{port}/0"
    )
    assert "Traceback" not in done.stderr


def _redis_of(server: RunningServer) -> str:
    match = re.search(r"through Redis at (\S+)", server.log)
    assert match is not None
    return match.group(1)


async def test_a_node_subscribes_to_a_channel_once_whatever_its_number_of_clients(
    nodes: tuple[RunningServer, RunningServer],
) -> None:
    a, b = nodes
    admin = aioredis.Redis.from_url(_redis_of(a))
    clients = [await NativeClient.open(node.ws_url) for node in (a, a, a, a, b)]
    try:
        for client in clients:
            await client.call("subscribe", channel="many")
        # One SUBSCRIBE per node (two), not one per connection (five).
        assert await admin.pubsub_numsub("orbiter:ch:many") == [(b"orbiter:ch:many", 2)]
        async with AsyncClient(b.url) as api:
            await api.publish("many", "x")
        for client in clients:
            assert (await client.next_push())["data"] == "x"
        for client in clients[:4]:  # node A's last client goes: A unsubscribes
            await client.close()
        for _ in range(100):
            if await admin.pubsub_numsub("orbiter:ch:many") == [(b"orbiter:ch:many", 1)]:
                break
            await asyncio.sleep(0.02)
        assert await admin.pubsub_numsub("orbiter:ch:many") == [(b"orbiter:ch:many", 1)]
    finally:
        for client in clients:
            await client.close()
        await admin.aclose()
