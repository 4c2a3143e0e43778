"""Two orbiter nodes on a real 3-master Redis Cluster (``--engine redis+cluster://...``).

Publications on channels whose slots are on different masters reach the
other node's subscriber once and in order; live delivery uses sharded
pub/sub: the master owning a channel counts one shard subscriber per node
(``PUBSUB SHARDNUMSUB``) and no plain one (``PUBSUB NUMSUB``); a channel's
keys all live on its master; both nodes are in the node list.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from orbiter import AsyncClient
from orbiter.engine.redis_cluster_mode import ClusterKeys
from tests.support.redis_cluster import RedisCluster
from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient

CHANNELS = [f"cl:{i}" for i in range(12)]
KEYS = ClusterKeys("orbiter")


async def test_two_nodes_on_a_redis_cluster_deliver_once_in_order_by_ssubscribe(
    redis_cluster: RedisCluster,
) -> None:
    cluster = redis_cluster
    masters = {channel: cluster.port_of(KEYS.meta(channel)) for channel in CHANNELS}
    assert len(set(masters.values())) == 3  # the channels are spread over every master
    nodes = [RunningServer(args=("--engine", cluster.url)) for _ in range(2)]
    admins = {port: aioredis.Redis(host="127.0.0.1", port=port) for port in cluster.ports}
    clients = [await NativeClient.open(node.ws_url) for node in nodes]
    try:
        for client in clients:
            for channel in CHANNELS:
                await client.call("subscribe", channel=channel)
        for channel, port in masters.items():
            name = KEYS.pubsub(channel)
            shard = await admins[port].pubsub_shardnumsub(name)
            assert shard == [(name.encode(), 2)]  # one sharded subscription per orbiter node
            plain = await admins[port].pubsub_numsub(name)
            assert plain == [(name.encode(), 0)]
        async with AsyncClient(nodes[0].url) as api:
            for round_ in range(3):
                for channel in CHANNELS:
                    await api.publish(channel, f"{channel}/{round_}")
            stats = await api.stats()
        for client in clients:
            got: dict[str, list[tuple[int, str]]] = {channel: [] for channel in CHANNELS}
            for _ in range(3 * len(CHANNELS)):
                push = await client.next_push()
                got[push["channel"]].append((push["offset"], push["data"]))
            for channel in CHANNELS:
                assert got[channel] == [(r + 1, f"{channel}/{r}") for r in range(3)]
            assert await client.pushes_now(0.2) == []
        for channel, port in masters.items():  # stream and history on the channel's master
            assert await admins[port].exists(KEYS.meta(channel), KEYS.history(channel)) == 2
        assert stats["cluster"]["nodes"] == 2
    finally:
        for client in clients:
            await client.close()
        for admin in admins.values():
            await admin.aclose()
        for node in nodes:
            node.stop()
