"""Channels sharded over two Redis servers (``--engine "redis://a,redis://b"``), two nodes.

Each channel lives on one of the two (its keys are on one server only, and
both servers hold some); publications on every channel reach the other
node's subscribers once, in order; the node list is on the first server.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from orbiter import AsyncClient
from tests.support.redis_server import RedisServer
from tests.support.server import RunningServer, serve_to_its_end
from tests.support.wsclient import NativeClient

CHANNELS = [f"shard:{i}" for i in range(12)]


async def test_channels_sharded_over_two_redis_servers_behave_as_one() -> None:
    servers = [RedisServer(), RedisServer()]
    engine = ",".join(server.url for server in servers)
    nodes = [RunningServer(args=("--engine", engine)) for _ in range(2)]
    admins = [aioredis.Redis.from_url(server.url) for server in servers]
    client = await NativeClient.open(nodes[1].ws_url)
    try:
        for channel in CHANNELS:
            await client.call("subscribe", channel=channel)
        async with AsyncClient(nodes[0].url) as api:
            for round_ in range(3):
                for channel in CHANNELS:
                    await api.publish(channel, f"{channel}/{round_}")
            stats = await api.stats()
        got: dict[str, list[tuple[int, str]]] = {channel: [] for channel in CHANNELS}
        for _ in range(3 * len(CHANNELS)):
            push = await client.next_push()
            got[push["channel"]].append((push["offset"], push["data"]))
        for channel in CHANNELS:
            assert got[channel] == [(r + 1, f"{channel}/{r}") for r in range(3)]
        assert await client.pushes_now(0.2) == []

        held = [
            {channel for channel in CHANNELS if await admin.exists(f"orbiter:meta:{channel}")}
            for admin in admins
        ]
        assert held[0] | held[1] == set(CHANNELS)
        assert held[0] & held[1] == set()  # each channel on one server only
        assert held[0]
        assert held[1]
        assert stats["cluster"]["nodes"] == 2
        assert await admins[0].hlen("orbiter:nodes") == 2
        assert await admins[1].exists("orbiter:nodes") == 0
    finally:
        await client.close()
        for admin in admins:
            await admin.aclose()
        for node in nodes:
            node.stop()
        for server in servers:
            server.close()


def test_a_shard_that_is_not_a_redis_url_is_one_line() -> None:
    done = serve_to_its_end("--engine", "redis://127.0.0.1:1/0,http://127.0.0.1:2/")
    assert done.returncode == 1
    assert done.stderr.startswith("orbiter: cannot start: 'http://127.0.0.1:2/' is not a Redis")
    assert "Traceback" not in done.stderr
