"""Behaviour specific to the memory engine: expiry, forgetting idle streams, the void
epoch of never-published channels, and the node's history budget."""

from __future__ import annotations

import asyncio
import time

import pytest

from orbiter.engine.base import HistoryPolicy, TooManyStreams
from orbiter.engine.memory import PUBLICATION_OVERHEAD, MemoryBroker, kept_size
from orbiter.model import JSON, StreamPosition


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


async def test_start_runs_the_sweeper_and_close_stops_it() -> None:
    broker = MemoryBroker(sweep_interval=0.01)
    policy = HistoryPolicy(size=0, ttl=1.0, meta_ttl=0.02)
    await broker.start()
    try:
        pub = await broker.publish("c", 1, policy)
        assert broker.stats()["channels"] == 1
        # Nothing but the background sweep runs here; within 2 s it forgets the idle stream.
        for _ in range(200):
            await asyncio.sleep(0.01)
            if not broker.stats()["channels"]:
                break
        assert broker.stats()["channels"] == 0
        assert (await broker.history("c", None, policy)).position.epoch != pub.epoch
    finally:
        await broker.close()
    await broker.close()  # a second close is harmless
    await broker.publish("d", 1, policy)
    await asyncio.sleep(0.1)  # ten sweep intervals, five meta_ttls: no sweep runs any more
    assert broker.stats()["channels"] == 1


async def test_at_most_max_streams_are_kept_and_idle_ones_make_room() -> None:
    broker = MemoryBroker(max_streams=2)
    policy = HistoryPolicy(size=0, ttl=1.0, meta_ttl=0.05)
    await broker.publish("a", 1, policy)
    await broker.publish("b", 1, policy)
    with pytest.raises(TooManyStreams, match="max_channels"):
        await broker.publish("c", 1, policy)
    assert (await broker.publish("a", 2, policy)).offset == 2  # existing streams go on
    await asyncio.sleep(0.06)  # both idle past meta_ttl: the next new stream sweeps them
    broker._full_sweep_at = 0.0
    assert (await broker.publish("c", 1, policy)).offset == 1


async def test_reading_channels_never_published_stores_nothing() -> None:
    broker = MemoryBroker(max_streams=2)
    policy = HistoryPolicy(size=10, ttl=60.0, meta_ttl=3600.0)
    for i in range(1000):
        page = await broker.history(f"never-{i}", None, policy)
        assert page.position == StreamPosition(0, broker.void_epoch)
        assert page.recoverable
        since = await broker.history(f"never-{i}", StreamPosition(3, "elsewhere"), policy)
        assert not since.recoverable
    assert broker.stats()["channels"] == 0
    await broker.publish("a", 1, policy)  # readers filled nothing: publishers still get room
    await broker.publish("b", 1, policy)
    assert broker.stats()["channels"] == 2


async def test_a_position_read_before_a_stream_was_forgotten_does_not_recover_its_successor() -> (
    None
):
    broker = MemoryBroker()
    policy = HistoryPolicy(size=10, ttl=1.0, meta_ttl=5.0)
    early = (await broker.history("late", None, policy)).position
    pub = await broker.publish("gone", 1, policy)
    broker.sweep(now=pub.time + 60.0)  # "gone" is forgotten
    assert broker.stats()["channels"] == 0
    await broker.publish("late", "first", policy)
    page = await broker.history("late", early, policy)
    assert not page.recoverable
    # A position read after the forgetting is good for the stream created after it.
    fresh = (await broker.history("later", None, policy)).position
    await broker.publish("later", "first", policy)
    page = await broker.history("later", fresh, policy)
    assert page.recoverable
    assert [p.data for p in page.publications] == ["first"]


def _size(data: str) -> int:
    return kept_size(data, None)


async def test_history_fits_the_node_budget_oldest_first_over_every_channel() -> None:
    one = _size("x" * 1000)
    broker = MemoryBroker(max_history_bytes=10 * one)
    policy = HistoryPolicy(size=100, ttl=60.0, meta_ttl=600.0)
    first = await broker.publish("a", "x" * 1000, policy)
    for i in range(24):  # a, b, c, a, b, c, ...
        await broker.publish("abc"[(i + 1) % 3], "x" * 1000, policy)
    assert broker.stats()["history_bytes"] == 10 * one
    kept = []
    for channel in "abc":
        kept += (await broker.history(channel, None, policy)).publications
    assert len(kept) == 10  # exactly the budget: not 9, not 11
    newest = sorted(kept, key=lambda p: p.time)
    assert min(p.time for p in kept) > first.time
    # The ten kept are the ten newest, whatever their channel.
    assert sorted((p.channel, p.offset) for p in kept) == sorted(
        (p.channel, p.offset) for p in newest
    )
    gap = await broker.history("a", StreamPosition(0, first.epoch), policy)
    assert not gap.recoverable  # the budget trimmed past it: the client is told
    assert gap.position.offset == 9


async def test_a_publication_larger_than_the_budget_is_published_but_not_kept() -> None:
    broker = MemoryBroker(max_history_bytes=_size("x" * 10))
    policy = HistoryPolicy(size=100, ttl=60.0, meta_ttl=600.0)
    pub = await broker.publish("a", "y" * 100, policy)
    assert pub.offset == 1
    page = await broker.history("a", None, policy)
    assert page.publications == []
    assert page.position.offset == 1
    assert broker.stats()["history_bytes"] == 0


async def test_publications_dropped_by_size_or_age_free_their_bytes() -> None:
    broker = MemoryBroker(max_history_bytes=1_000_000)
    policy = HistoryPolicy(size=1, ttl=60.0, meta_ttl=600.0)
    for i in range(5000):
        await broker.publish("a", f"p{i:04}", policy)
    assert broker.stats()["history_bytes"] == _size("p0000")
    broker.sweep()
    assert len(broker._kept) == 1  # what streams dropped is not held behind their back
    short = HistoryPolicy(size=10, ttl=0.01, meta_ttl=600.0)
    await broker.publish("b", "z", short)
    await asyncio.sleep(0.02)
    broker.sweep()
    assert broker.stats()["history_bytes"] == _size("p4999")


async def test_dropped_publications_never_hold_more_than_the_budget() -> None:
    budget = 100 * _size("p0000")
    broker = MemoryBroker(max_history_bytes=budget)
    policy = HistoryPolicy(size=1, ttl=60.0, meta_ttl=600.0)
    for i in range(10_000):  # each drops the one before: all but one are dead weight
        await broker.publish("a", f"p{i:04}", policy)
        assert len(broker._kept) <= 100
    page = await broker.history("a", None, policy)
    assert [p.data for p in page.publications] == ["p9999"]


@pytest.mark.parametrize(
    ("data", "tags", "expected"),
    [
        ("x" * 1000, None, 1000 + 2 + PUBLICATION_OVERHEAD),  # an ASCII string: its quotes too
        ("é" * 100, None, 200 + 2 + PUBLICATION_OVERHEAD),  # UTF-8 bytes, not characters
        ("x" * 10, {"kind": "news"}, 10 + 2 + 8 + PUBLICATION_OVERHEAD),  # the tags' characters
        ({"n": 12345}, None, len(b'{"n":12345}') + PUBLICATION_OVERHEAD),
        ([1, 2, 3], {"a": "b"}, len(b"[1,2,3]") + 2 + PUBLICATION_OVERHEAD),
        (None, None, 4 + PUBLICATION_OVERHEAD),
    ],
)
async def test_what_a_kept_publication_counts_against_the_budget(
    data: JSON, tags: dict[str, str] | None, expected: int
) -> None:
    """The sizes the budget adds, in figures (not from kept_size itself): the engine's
    running total and each publication's size must both say them, whatever path of the
    engine computed them."""
    assert kept_size(data, tags) == expected
    broker = MemoryBroker(max_history_bytes=10**9)
    policy = HistoryPolicy(size=100, ttl=60.0, meta_ttl=600.0)
    first = await broker.publish("a", data, policy, tags)
    await broker.publish("b", data, policy, tags)
    assert first.size == expected
    assert broker.stats()["history_bytes"] == 2 * expected


async def test_the_budget_is_exact_for_every_kind_of_data() -> None:
    """Ten publications of a kind fill a budget of ten of them: the eleventh evicts the
    first (an under-counted size would keep eleven, an over-counted one nine)."""
    policy = HistoryPolicy(size=100, ttl=60.0, meta_ttl=600.0)
    for data, tags in [
        ("x" * 50, None),
        ("ü" * 50, None),
        ({"k": "v" * 50}, None),
        ("x" * 50, {"t": "u"}),
    ]:
        broker = MemoryBroker(max_history_bytes=10 * kept_size(data, tags))
        for i in range(11):
            await broker.publish("abc"[i % 3], data, policy, tags)
        kept = [
            pub
            for channel in "abc"
            for pub in (await broker.history(channel, None, policy)).publications
        ]
        assert len(kept) == 10, (data, tags)
        assert (await broker.history("a", None, policy)).publications[0].offset == 2
