"""PubSub's counts for ``GET /metrics``: ``published``, ``delivered`` (derived when read
from the channels' publication numbers) and the sampled hand-over latency."""

from __future__ import annotations

import asyncio

from orbiter.config.settings import Config
from orbiter.engine.memory import MemoryBroker, MemoryPresenceStore
from orbiter.model import JSON
from orbiter.services.pubsub import LATENCY_SAMPLE, PubSub
from orbiter.services.shared_batch import SharedBatch


class Sink:
    user: str | None = None
    info: JSON = None

    def __init__(self, name: str) -> None:
        self.client_id = name
        self.got = 0

    def deliver_batch(self, batch: SharedBatch) -> None:
        self.got += len(batch.pubs)

    def deliver_presence(self, channel: str, message: bytes) -> None:
        pass


def make() -> PubSub:
    return PubSub(Config(), MemoryBroker(), MemoryPresenceStore())


async def test_deliveries_count_the_subscribers_each_publication_found() -> None:
    pubsub = make()
    a, b, c = Sink("a"), Sink("b"), Sink("c")
    await pubsub.subscribe(a, "ch")
    await pubsub.subscribe(b, "ch")
    await pubsub.publish("ch", 1)  # 2 subscribers
    await pubsub.publish("ch", 2)  # 2
    assert pubsub.delivered == 4  # read before the hand-over: due, so counted
    await pubsub.subscribe(c, "ch")
    await pubsub.publish("ch", 3)  # 3
    await asyncio.sleep(0)
    await pubsub.unsubscribe(a, "ch")
    await pubsub.publish("ch", 4)  # 2
    await pubsub.publish("other", 5)  # nobody here: none due
    assert pubsub.delivered == 4 + 3 + 2
    await pubsub.unsubscribe(b, "ch")
    await pubsub.unsubscribe(c, "ch")  # the channel goes: what it counted stays
    await pubsub.subscribe(a, "ch")
    await pubsub.publish("ch", 6)  # 1
    assert pubsub.delivered == 4 + 3 + 2 + 1
    assert pubsub.published == 6
    await asyncio.sleep(0)
    # What was handed over agrees (c joined before 3 and is handed what was not out yet).
    assert a.got + b.got + c.got >= 4 + 3 + 2 + 1


async def test_one_channel_hand_over_in_the_sample_is_timed() -> None:
    pubsub = make()
    timed: list[float] = []
    pubsub.latency_probe = timed.append
    sinks = [Sink(str(i)) for i in range(5)]
    for i, sink in enumerate(sinks):
        await pubsub.subscribe(sink, f"ch{i}")
    published = set()
    for _ in range(2 * LATENCY_SAMPLE):  # five channels' hand-overs in each flush
        for i in range(5):
            published.add((await pubsub.publish(f"ch{i}", "x")).time)
        await asyncio.sleep(0)
    assert len(timed) == 10  # one in LATENCY_SAMPLE of the 5 * 2 * LATENCY_SAMPLE hand-overs
    assert set(timed) <= published  # a publication's time, timed from then to its hand-over
