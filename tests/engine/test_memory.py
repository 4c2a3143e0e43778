"""Behaviour specific to the memory engine: expiry by age and forgetting idle streams."""

from __future__ import annotations

import asyncio
import time

import pytest

from orbiter.engine.base import HistoryPolicy, TooManyStreams
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


async def test_at_most_max_streams_are_kept_and_idle_ones_make_room() -> None:
    broker = MemoryBroker(max_streams=2)
    policy = HistoryPolicy(size=0, ttl=1.0, meta_ttl=0.05)
    await broker.publish("a", 1, policy)
    await broker.history("b", None, policy)
    for make_third in (broker.publish("c", 1, policy), broker.history("c", None, policy)):
        with pytest.raises(TooManyStreams, match="max_channels"):
            await make_third
    assert (await broker.publish("a", 2, policy)).offset == 2  # existing streams go on
    await asyncio.sleep(0.06)  # both idle past meta_ttl: the next new stream sweeps them
    broker._full_sweep_at = 0.0
    assert (await broker.publish("c", 1, policy)).offset == 1
