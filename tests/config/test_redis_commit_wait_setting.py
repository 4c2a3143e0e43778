"""``engine.commit_wait`` reaches the Redis engine: the bound of a flush's wait for Redis's
answer (``engine/redis_publishing.py``), one wait per iteration shared by a sharded
broker's shards; 0 turns it off. The brokers are built, not started (no Redis needed)."""

from __future__ import annotations

import pytest

from orbiter.config.settings import config_from_dict
from orbiter.engine.redis import RedisBroker
from orbiter.engine.redis_cluster_mode import ClusterRedisBroker
from orbiter.engine.redis_shards import ShardedRedisBroker
from orbiter.engine.redis_wait import IterationWait
from orbiter.node import engine_for


def _wait_of(broker: RedisBroker) -> IterationWait:
    wait = broker._publisher._wait
    assert wait is not None
    return wait


@pytest.mark.parametrize("value", [0.001, 0.0])
async def test_a_single_redis_takes_the_setting(value: float) -> None:
    config = config_from_dict(
        {"engine": {"kind": "redis", "url": "redis://127.0.0.1:1/0", "commit_wait": value}}
    )
    broker = engine_for(config)
    assert isinstance(broker, RedisBroker)
    assert _wait_of(broker).bound == value


async def test_the_default_is_the_settings_default() -> None:
    broker = engine_for(
        config_from_dict({"engine": {"kind": "redis", "url": "redis://127.0.0.1:1/0"}})
    )
    assert isinstance(broker, RedisBroker)
    assert _wait_of(broker).bound == config_from_dict({}).engine.commit_wait == 0.0002


async def test_shards_share_one_wait_of_the_setting() -> None:
    config = config_from_dict(
        {
            "engine": {
                "kind": "redis",
                "url": "redis://127.0.0.1:1/0,redis://127.0.0.1:2/0",
                "commit_wait": 0.003,
            }
        }
    )
    broker = engine_for(config)
    assert isinstance(broker, ShardedRedisBroker)
    first, second = (_wait_of(shard) for shard in broker.shards)
    assert first is second  # once per iteration in all
    assert first.bound == 0.003


async def test_a_cluster_takes_the_setting() -> None:
    config = config_from_dict(
        {"engine": {"kind": "redis", "url": "redis+cluster://127.0.0.1:1", "commit_wait": 0.002}}
    )
    broker = engine_for(config)
    assert isinstance(broker, ClusterRedisBroker)
    assert _wait_of(broker).bound == 0.002
