"""Behaviour specific to the memory engine: expiry by age and forgetting idle streams."""

from __future__ import annotations

import asyncio
import time

from orbiter.engine.base import HistoryPolicy
from orbiter.engine.memory import MemoryBroker
from orbiter.model import StreamPosition


async def test_history_older_than_ttl_is_dropped() -> None:
    broker = MemoryBroker()
    policy = HistoryPolicy(size=10, ttl=0.05, meta_ttl=60.0)
    old = await broker.publish("c", "old", policy)
    await asyncio.sleep(0.06)
    await broker.publish("c", "new", policy)
    page = await broker.history("c", None, policy)
    assert [p.data for p in page.publications] == ["new"]
    gap = await broker.history("c", StreamPosition(old.offset - 1, old.epoch), policy)
    assert not gap.recoverable


async def test_sweep_forgets_idle_streams_so_they_return_with_a_new_epoch() -> None:
    broker = MemoryBroker()
    policy = HistoryPolicy(size=10, ttl=1.0, meta_ttl=5.0)
    pub = await broker.publish("c", 1, policy)
    broker.sweep(now=pub.time + 2.0)  # history expired, stream metadata still young
    assert (await broker.history("c", None, policy)).position.epoch == pub.epoch
    broker.sweep(now=time.time() + 6.0)
    page = await broker.history("c", None, policy)
    assert page.position.epoch != pub.epoch
    assert page.position.offset == 0


async def test_sweep_keeps_streams_with_subscribers() -> None:
    broker = MemoryBroker()
    policy = HistoryPolicy(size=10, ttl=1.0, meta_ttl=5.0)
    await broker.subscribe("c")
    pub = await broker.publish("c", 1, policy)
    broker.sweep(now=time.time() + 60.0)
    assert (await broker.history("c", None, policy)).position == StreamPosition(1, pub.epoch)


async def test_start_and_close_run_the_sweeper() -> None:
    broker = MemoryBroker(sweep_interval=0.01)
    await broker.start()
    await broker.close()
    await broker.close()
