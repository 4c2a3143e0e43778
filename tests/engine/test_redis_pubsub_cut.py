"""The Redis engine's pub/sub connection once redis-py dropped its streams (its ping failed,
say) but before the reader noticed: a subscribe then fails at once with EngineUnavailable,
rather than failing midway in redis-py (an AttributeError, answered "internal server error")
or subscribing on a new socket that nobody reads and waiting the whole ping timeout."""

from __future__ import annotations

import asyncio
import time

import pytest

from orbiter.engine.base import EngineUnavailable
from orbiter.engine.redis import PING_TIMEOUT, RedisBroker
from tests.support.redis_server import RedisServer


async def test_a_subscribe_on_a_pubsub_connection_redis_py_dropped_fails_at_once(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    broker = RedisBroker(redis_server.url, prefix=redis_prefix)
    await broker.start()
    try:
        await broker.subscribe("kept")
        connection = broker._connection
        assert connection is not None
        # What redis-py does when a command of this connection fails: its streams go.
        await connection.disconnect(nowait=True)
        started = time.monotonic()
        with pytest.raises(EngineUnavailable, match="closed"):
            await broker.subscribe("news")
        assert time.monotonic() - started < min(1.0, PING_TIMEOUT / 2)
        assert "news" not in broker._subscribed
        assert not connection.is_connected  # no socket connected behind the reader's back
        # The reader notices the cut and connects again: subscribing works once more.
        for _ in range(200):
            if broker._connection is not None and broker._connection is not connection:
                break
            await asyncio.sleep(0.02)
        await broker.subscribe("news")
        assert "news" in broker._subscribed
    finally:
        await broker.close()
