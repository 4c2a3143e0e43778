"""Held long polls against a real PubSub and memory engine, without a network."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import orjson
import pytest

from orbiter.config.settings import ChannelRule, Config
from orbiter.engine.memory import MemoryBroker, MemoryPresenceStore
from orbiter.model import StreamPosition
from orbiter.services.polls import Batch, PollHub, TooManyPolls
from orbiter.services.pubsub import PubSub
from tests.support.clock import ManualClock


def make(config: Config | None = None) -> PubSub:
    return PubSub(config or Config(), MemoryBroker(), MemoryPresenceStore())


def alive() -> bool:
    return True


async def held(hub: PollHub, count: int) -> None:
    """Wait until ``count`` polls are held (set up and waiting)."""
    for _ in range(2000):
        if hub.waiting >= count:
            break
        await asyncio.sleep(0.001)
    else:
        raise AssertionError(f"{hub.waiting} polls held, not {count}")
    await asyncio.sleep(0.01)


async def test_publications_after_since_come_at_once_in_one_batch() -> None:
    pubsub = make()
    first = await pubsub.publish("c", 1)
    for n in (2, 3):
        await pubsub.publish("c", n)
    hub = PollHub(pubsub, max_waiting=10)
    batch = await hub.poll("c", StreamPosition(1, first.epoch), timeout=5, alive=alive)
    assert batch is not None
    assert [p.data for p in batch.publications] == [2, 3]
    assert batch.position == StreamPosition(3, first.epoch)
    assert batch.recoverable
    assert orjson.loads(batch.json())["publications"][0]["offset"] == 2


async def test_a_publication_wakes_every_waiter_with_one_shared_batch() -> None:
    pubsub = make()
    hub = PollHub(pubsub, max_waiting=10)
    start = await hub.position("c")
    polls = [asyncio.create_task(hub.poll("c", start, timeout=5, alive=alive)) for _ in range(3)]
    await held(hub, 3)
    assert pubsub.subscriber_count("c") == 1  # one watch, however many waiters
    await pubsub.publish("c", "news")
    batches = await asyncio.gather(*polls)
    first = batches[0]
    assert first is not None
    assert [p.data for p in first.publications] == ["news"]
    assert all(b is first for b in batches)  # encoded once for all of them
    assert batches[1] is not None
    assert batches[1].json() is first.json()
    assert hub.waiting == 0


async def test_publications_arriving_before_the_waiter_runs_come_together() -> None:
    pubsub = make()
    hub = PollHub(pubsub, max_waiting=10)
    start = await hub.position("c")
    poll = asyncio.create_task(hub.poll("c", start, timeout=5, alive=alive))
    await held(hub, 1)
    await pubsub.publish("c", 1)
    await pubsub.publish("c", 2)  # before the woken poll gets to run
    batch = await poll
    assert batch is not None
    assert [p.data for p in batch.publications] == [1, 2]


async def test_timeout_answers_an_empty_batch_at_the_current_position(
    manual_clock: ManualClock,
) -> None:
    pubsub = make()
    await pubsub.publish("c", 1)
    hub = PollHub(pubsub, max_waiting=10)
    start = await hub.position("c")
    poll = asyncio.create_task(hub.poll("c", start, timeout=30, alive=alive))
    await manual_clock.advance(29.9)
    assert hub.waiting == 1
    assert not poll.done()
    await manual_clock.advance(0.2)
    batch = poll.result()
    assert batch is not None
    assert (batch.publications, batch.position, batch.recoverable) == ([], start, True)


async def test_trimmed_history_or_another_epoch_is_unrecoverable_and_empty() -> None:
    config = replace(Config(), channel_defaults=ChannelRule(history_size=2))
    pubsub = make(config)
    first = await pubsub.publish("c", 1)
    for n in range(2, 6):
        await pubsub.publish("c", n)
    hub = PollHub(pubsub, max_waiting=10)
    trimmed = await hub.poll("c", StreamPosition(1, first.epoch), timeout=5, alive=alive)
    other = await hub.poll("c", StreamPosition(1, "gone"), timeout=5, alive=alive)
    for batch in (trimmed, other):
        assert batch is not None
        assert (batch.recoverable, batch.publications) == (False, [])
        assert batch.position == StreamPosition(5, first.epoch)


async def test_held_polls_are_bounded() -> None:
    pubsub = make()
    hub = PollHub(pubsub, max_waiting=2)
    start = await hub.position("c")
    polls = [asyncio.create_task(hub.poll("c", start, timeout=5, alive=alive)) for _ in range(2)]
    await held(hub, 2)
    with pytest.raises(TooManyPolls):
        await hub.poll("c", start, timeout=5, alive=alive)
    await pubsub.publish("c", 1)
    await asyncio.gather(*polls)
    assert await hub.poll("c", start, timeout=5, alive=alive) is not None


async def test_sweep_releases_polls_whose_client_left_and_drops_idle_watches() -> None:
    pubsub = make()
    hub = PollHub(pubsub, max_waiting=10, linger=5)
    start = await hub.position("c")
    connected = True
    poll = asyncio.create_task(hub.poll("c", start, timeout=5, alive=lambda: connected))
    await held(hub, 1)
    await hub.sweep()
    assert not poll.done()
    connected = False
    await hub.sweep()
    assert await poll is None
    assert hub.waiting == 0
    assert hub.watched == ["c"]  # kept a while for the client's next poll
    await hub.sweep(now=asyncio.get_running_loop().time() + 10)
    assert hub.watched == []
    assert pubsub.subscriber_count("c") == 0


async def test_the_sweeper_releases_a_departed_client_within_its_interval(
    manual_clock: ManualClock,
) -> None:
    pubsub = make()
    hub = PollHub(pubsub, max_waiting=10, linger=5, sweep_interval=1)
    await hub.start()
    start = await hub.position("c")
    connected = True
    poll = asyncio.create_task(hub.poll("c", start, timeout=30, alive=lambda: connected))
    await manual_clock.advance(0.5)
    assert hub.waiting == 1
    connected = False
    await manual_clock.advance(0.45)  # the sweep at 1 s has not run yet
    assert not poll.done()
    await manual_clock.advance(0.1)
    assert poll.result() is None
    assert hub.watched == ["c"]  # kept for ``linger`` after its last poll
    await manual_clock.advance(4.9)
    assert hub.watched == ["c"]
    await manual_clock.advance(0.1)  # the sweep at 6 s finds it idle for 5 s: dropped
    assert hub.watched == []
    assert pubsub.subscriber_count("c") == 0
    await hub.close()


async def test_close_answers_held_polls_at_once_and_unsubscribes() -> None:
    pubsub = make()
    hub = PollHub(pubsub, max_waiting=10)
    await hub.start()
    start = await hub.position("c")
    poll = asyncio.create_task(hub.poll("c", start, timeout=30, alive=alive))
    await held(hub, 1)
    await hub.close()
    batch = await asyncio.wait_for(poll, 1)
    assert isinstance(batch, Batch)
    assert (batch.publications, batch.position) == ([], start)
    assert pubsub.subscriber_count("c") == 0
    # After close, polls are answered without being held.
    after = await asyncio.wait_for(hub.poll("c", start, timeout=30, alive=alive), 1)
    assert after is not None
    assert after.publications == []
