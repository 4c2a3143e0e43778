"""The cluster mode's command client (``engine/redis_cluster_client.py``) on a real 3-master
Redis Cluster (``tests/support/redis_cluster.py``, this module's own) with one master down:
a fresh client still reads the slot map and the command table, and reads the live masters'
keys."""

from __future__ import annotations

from typing import Any

import pytest
from redis.cluster import PRIMARY
from redis.exceptions import ConnectionError as RedisConnectionError

from orbiter.engine.redis_cluster_client import ClusterClient, cluster_client
from tests.support.redis_cluster import RedisCluster


def _client(port: int) -> ClusterClient:
    client = cluster_client(f"redis+cluster://127.0.0.1:{port}")
    assert isinstance(client, ClusterClient)
    return client


async def _first_master(startup: int) -> int:
    """The port of the master a fresh client started from ``startup`` reads redis-py's
    command table from (the first master of its slot map), all masters up."""
    probe = _client(startup)
    try:
        await probe.initialize()
        first: Any = probe.nodes_manager.get_nodes_by_server_type(PRIMARY)[0]
        return int(first.port)
    finally:
        await probe.aclose()


def _key_on(cluster: RedisCluster, port: int, prefix: str) -> str:
    """A key (``prefix`` first) whose slot is on the master on ``port``."""
    return next(f"{prefix}k{n}" for n in range(1000) if cluster.port_of(f"{prefix}k{n}") == port)


async def test_a_fresh_client_reads_while_its_slot_maps_first_master_is_down(
    redis_cluster: RedisCluster, redis_prefix: str
) -> None:
    """redis-py asks ``COMMAND`` of the first master of the slot map it read; when that one
    is down, the client asks the others instead of failing every command (with only redis-py's
    parser it fails: the bug that made a fresh client's first read fail in full CI runs)."""
    ports = redis_cluster.ports
    # A live startup node whose slot map names another master first: that one goes down.
    pairs = [(startup, await _first_master(startup)) for startup in ports]
    startup, down = next(((s, f) for s, f in pairs if s != f), (ports[1], ports[0]))
    live = next(p for p in ports if p not in (startup, down))
    key = _key_on(redis_cluster, live, redis_prefix)
    lost = _key_on(redis_cluster, down, redis_prefix)
    writer = _client(live)
    await writer.set(key, b"kept")
    await writer.aclose()
    redis_cluster.stop_node(down)
    try:
        reader = _client(startup)
        try:
            assert await reader.get(key) == b"kept"
            # The default node (keyless commands) is a master that answers.
            assert reader.nodes_manager.default_node is not None
            assert reader.nodes_manager.default_node.port != down
        finally:
            await reader.aclose()
        # A key on the stopped master fails, as it should: its slots are down.
        reader = _client(startup)
        try:
            with pytest.raises(RedisConnectionError):
                await reader.get(lost)
        finally:
            await reader.aclose()
    finally:
        redis_cluster.start_node(down)
