"""``Broker.flush`` on channels sharded over two Redis servers: what a read queued goes to
each shard in that read's iteration, as one pipeline per shard (the fast publish path and the
native read call it)."""

from __future__ import annotations

from orbiter.engine.base import HistoryPolicy
from orbiter.engine.redis_shards import ShardedRedisBroker, shard_of
from tests.support.redis_monitor import ScriptCalls
from tests.support.redis_server import RedisServer
from tests.support.waiting import until

POLICY = HistoryPolicy(size=10, ttl=60.0, meta_ttl=600.0)


async def test_flush_sends_each_shards_queue_in_the_reads_iteration(
    redis_server: RedisServer, second_redis_server: RedisServer, redis_prefix: str
) -> None:
    broker = ShardedRedisBroker([redis_server.url, second_redis_server.url], prefix=redis_prefix)
    await broker.start()
    watched = [
        ScriptCalls(server.port, redis_prefix) for server in (redis_server, second_redis_server)
    ]
    for calls in watched:
        await calls.start()
    try:
        names = [f"s{n}" for n in range(50)]
        channels = [next(name for name in names if shard_of(name, 2) == shard) for shard in (0, 1)]
        # The first two of each shard, flushed, go at once; the one queued after them in
        # the same iteration waits for its shard's answer. Without the flush all three of
        # a shard would go as one pipeline.
        futures = [broker.publish_soon(c, i, POLICY) for i in range(2) for c in channels]
        broker.flush()
        futures += [broker.publish_soon(c, 2, POLICY) for c in channels]
        pubs = [await f for f in futures]
        assert sorted(p.offset for p in pubs) == [1, 1, 2, 2, 3, 3]
        await until(lambda: all(sum(calls.calls) >= 3 for calls in watched))
        assert [calls.calls for calls in watched] == [[2, 1], [2, 1]]
    finally:
        for calls in watched:
            await calls.close()
        await broker.close()
