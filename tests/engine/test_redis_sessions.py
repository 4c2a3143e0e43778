"""The session directory on a real ``redis-server``: one owner per id, renewed in bulk,
released, taken over from a silent owner, and the owner told when it was."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from orbiter.engine.redis import RedisBroker
from orbiter.engine.redis_cluster_mode import ClusterRedisBroker
from orbiter.engine.redis_sessions import SessionDirectory
from orbiter.model import StreamPosition
from tests.support.redis_cluster import RedisCluster as RedisClusterServer
from tests.support.redis_server import RedisServer


@pytest.fixture
async def pair(
    redis_server: RedisServer, redis_prefix: str
) -> AsyncIterator[tuple[SessionDirectory, SessionDirectory, aioredis.Redis]]:
    brokers = [RedisBroker(redis_server.url, prefix=redis_prefix) for _ in range(2)]
    for broker in brokers:
        await broker.start()
    directories = [SessionDirectory(broker.cluster, ttl=0.6) for broker in brokers]
    client = aioredis.Redis.from_url(redis_server.url)
    yield directories[0], directories[1], client
    await client.aclose()
    for directory, broker in zip(directories, brokers, strict=True):
        await directory.close()
        await broker.close()


async def test_one_owner_renewed_then_released(
    pair: tuple[SessionDirectory, SessionDirectory, aioredis.Redis],
) -> None:
    a, b, client = pair
    key = a.key("/sockjs/", "s1")
    lost: list[str] = []
    assert await a.claim(key, None, lambda: lost.append("a")) == a.node_id
    assert await b.claim(key, None, lambda: lost.append("b")) == a.node_id  # taken
    await asyncio.sleep(1.5)  # well past the 0.6 s TTL: renewed every 0.2 s
    assert await b.owner(key) == a.node_id
    a.release(key)
    await asyncio.sleep(0.1)
    assert await client.exists(key) == 0
    assert lost == []


async def test_a_claim_taken_over_ends_the_old_owners_session(
    pair: tuple[SessionDirectory, SessionDirectory, aioredis.Redis],
) -> None:
    a, b, _ = pair
    key = a.key("/sockjs/", "s2")
    lost: list[str] = []
    told = asyncio.Event()

    def tell(who: str) -> None:
        lost.append(who)
        told.set()

    assert await a.claim(key, None, lambda: tell("a")) == a.node_id
    # b took a for dead (a did not answer in time): it claims over a.
    assert await b.claim(key, a.node_id, lambda: tell("b")) == b.node_id
    # a's next renewal (every 0.2 s) finds b there, and does not overwrite it
    await asyncio.wait_for(told.wait(), 5)  # a busy machine may delay a renewal
    assert lost == ["a"]
    assert await a.owner(key) == b.node_id
    a.release(key)  # a's session ends: b's entry stays
    await asyncio.sleep(0.1)
    assert await a.owner(key) == b.node_id


async def test_a_keys_position_keeps_the_newer(
    pair: tuple[SessionDirectory, SessionDirectory, aioredis.Redis],
) -> None:
    a, b, _ = pair
    assert await a.key_position("k") is None
    await a.keep_key_position("k", StreamPosition(5, "e1"), 10)
    await b.keep_key_position("k", StreamPosition(3, "e1"), 10)  # older: kept 5
    assert await b.key_position("k") == StreamPosition(5, "e1")
    await b.keep_key_position("k", StreamPosition(1, "e2"), 10)  # another epoch: taken
    assert await a.key_position("k") == StreamPosition(1, "e2")
    await a.keep_key_position("k", StreamPosition(2, "e2"), 0.2)
    await asyncio.sleep(0.4)
    assert await a.key_position("k") is None


async def test_claims_on_a_redis_cluster_are_renewed(
    redis_cluster: RedisClusterServer, redis_prefix: str
) -> None:
    """A Cluster's pipelines refuse scripts: renewal claims each key on its own (one in
    another slot each), so an entry held past the TTL is still there and still ours."""
    broker = ClusterRedisBroker(redis_cluster.url, prefix=redis_prefix)
    await broker.start()
    directory = SessionDirectory(broker.cluster, ttl=0.6)
    try:
        keys = [directory.key("/sockjs/", f"s{n}") for n in range(6)]
        for key in keys:
            assert await directory.claim(key, None, lambda: None) == directory.node_id
        await asyncio.sleep(1.5)  # well past the 0.6 s TTL: renewed every 0.2 s
        for key in keys:
            assert await directory.owner(key) == directory.node_id
    finally:
        await directory.close()
        await broker.close()
