"""Three ``orbiter serve`` nodes on one real Redis answer as one server.

``/api/channels``, ``/api/presence`` (a channel with presence off: its
subscribers' number), ``/api/stats`` (a cluster section: the nodes, their
connections summed and each one's share), ``event(keys)`` over HTTP and
over pyorbited's wire protocol (a key connected to another node is reached,
and answered Success), and STOMP ``/topic/*`` both ways, whichever node each
end is on.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import pytest

from orbiter import AsyncClient
from orbiter.ports import free_port
from tests.support.pyorbited_client import SimpleClient
from tests.support.redis_server import RedisServer
from tests.support.server import RunningServer
from tests.support.stomp_helpers import RawClient
from tests.support.wsclient import NativeClient

_STOMP_PORT = re.compile(r"stomp listening on \S+:(\d+)")


@pytest.fixture
def cluster() -> Iterator[tuple[list[RunningServer], int]]:
    """Three nodes (STOMP TCP on each), node C with pyorbited's event port; that port."""
    redis = RedisServer()
    orbit_port = free_port()
    started: list[RunningServer] = []
    try:
        for index in range(3):
            toml = '[stomp]\nlisten = "127.0.0.1:0"\n'
            if index == 2:
                toml += f"[pyorbited]\nenabled = true\nport = {orbit_port}\n"
            started.append(RunningServer(toml, args=("--engine", redis.url)))
        for server in started:
            assert server.wait_for_log("stomp listening on")
        yield started, orbit_port
    finally:
        for server in started:
            server.stop()
        redis.close()


def _stomp_port(server: RunningServer) -> int:
    match = _STOMP_PORT.search(server.log)
    assert match is not None
    return int(match.group(1))


async def _stats(url: str) -> dict[str, Any]:
    async with AsyncClient(url) as api:
        return await api.stats()


async def test_three_nodes_answer_as_one_server(
    cluster: tuple[list[RunningServer], int],
) -> None:
    (a, b, c), orbit_port = cluster
    clients = [
        await NativeClient.open(a.ws_url),
        await NativeClient.open(a.ws_url),
        await NativeClient.open(b.ws_url),
    ]
    ann = await NativeClient.open(a.ws_url, user="ann", location="/chat")  # key on node A
    stomp = RawClient(_stomp_port(b))  # a STOMP subscriber on node B
    stomp_c = RawClient(_stomp_port(c))
    orbit = SimpleClient("127.0.0.1", orbit_port)
    try:
        for client in clients:
            await client.call("subscribe", channel="news")
        assert stomp.connect().command == "CONNECTED"
        stomp.frame("SUBSCRIBE", [("destination", "/topic/news"), ("id", "1"), ("receipt", "r")])
        assert stomp.next().command == "RECEIPT"

        async with AsyncClient(c.url) as api_c:
            # Channels and their subscribers, on every node (native and STOMP alike).
            channels = await api_c.channels()
            assert channels["news"] == 4
            assert channels["$key:ann, 0, /chat"] == 1
            # A channel with presence off: its subscribers' number on every node.
            presence = await api_c.presence("news")
            assert presence == {"channel": "news", "clients": 4, "users": []}

            # The cluster section of the stats: three nodes, every connection.
            stats = await api_c.stats()
            here = stats["connections"]  # node C's: this API client's, no more
            assert here <= 1
            cluster_stats = stats["cluster"]
            assert cluster_stats["nodes"] == 3
            assert cluster_stats["answered"] == 3
            assert cluster_stats["connections"] == 3 + 2 + here  # A: 3, B: 1 + STOMP 1
            by_pid = {share["pid"]: share["connections"] for share in cluster_stats["by_node"]}
            assert by_pid == {a.process.pid: 3, b.process.pid: 2, c.process.pid: here}

            # event(keys) from node C reaches ann's connection on node A.
            answer = await api_c.event(["ann, 0, /chat"], "hello ann")
            assert [r["key"] for r in answer] == ["ann, 0, /chat"]
            assert (await ann.next_push())["data"] == "hello ann"

            # A publication on node C reaches the STOMP subscriber on node B.
            await api_c.publish("news", "to every node")
        for client in clients:
            assert (await client.next_push())["data"] == "to every node"
        message = await asyncio.to_thread(stomp.next)
        assert message.command == "MESSAGE"
        assert message.body == b"to every node"

        # STOMP SEND on node C reaches native subscribers on nodes A and B.
        assert stomp_c.connect().command == "CONNECTED"
        stomp_c.frame("SEND", [("destination", "/topic/news")], b"from stomp on C")
        for client in clients:
            assert (await client.next_push())["data"] == "from stomp on C"

        # pyorbited's wire client on node C: a key connected to node A is reached (Success),
        # a key connected nowhere is named in the Failure.
        got = await asyncio.to_thread(orbit.event, ["ann, 0, /chat"], "via orbit")
        assert got == b"Success\r\nid: 1\r\n\r\n"
        assert (await ann.next_push())["data"] == "via orbit"
        got = await asyncio.to_thread(orbit.event, ["ann, 0, /chat", "bob, 0, /x"], "two")
        assert got == (
            b"Failure\r\nid: 2\r\nmsg: Failed to reach one or more recipients\r\n"
            b"recipient: (bob, 0, /x)\r\n\r\n"
        )
        assert (await ann.next_push())["data"] == "two"

        # ann leaves: her key is reached nowhere any more.
        await ann.close()
        for _ in range(100):
            got = await asyncio.to_thread(orbit.event, ["ann, 0, /chat"], "gone?")
            if got.startswith(b"Failure"):
                break
            await asyncio.sleep(0.05)
        assert got.startswith(b"Failure")
    finally:
        orbit.close()
        stomp.close()
        stomp_c.close()
        await ann.close()
        for client in clients:
            await client.close()

    # A node that stops leaves the cluster at once (it takes its entry out).
    b.stop()
    stats = await _stats(c.url)
    assert stats["cluster"]["nodes"] == 2
    assert stats["cluster"]["answered"] == 2


async def test_after_a_redis_restart_the_nodes_find_each_other_again() -> None:
    """The node list lives in Redis: a Redis restarted without its data gets it back from
    the nodes' next beats, and the cluster-wide answers count every node again."""
    redis = RedisServer()
    nodes = [RunningServer(args=("--engine", redis.url)) for _ in range(2)]
    client = await NativeClient.open(nodes[1].ws_url)
    try:
        await client.call("subscribe", channel="after")
        redis.stop()
        redis.start()  # empty: no node list, no streams
        stats: dict[str, Any] = {}
        for _ in range(150):  # the nodes reconnect (backoff up to 2 s) and beat (1 s)
            try:
                stats = await _stats(nodes[0].url)
            except OSError:
                stats = {}
            if stats.get("cluster", {}).get("answered") == 2:
                break
            await asyncio.sleep(0.05)
        assert stats["cluster"]["nodes"] == 2
        assert stats["cluster"]["answered"] == 2
        async with AsyncClient(nodes[0].url) as api:
            assert (await api.channels())["after"] == 1  # node B's subscriber, asked again
    finally:
        await client.close()
        for node in nodes:
            node.stop()
        redis.close()
