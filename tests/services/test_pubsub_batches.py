"""PubSub's fan-out: a channel's publications of one loop iteration go out as one shared batch."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from orbiter.config.settings import Config, ConfigError, SessionTiming, load_config
from orbiter.engine.memory import MemoryBroker, MemoryPresenceStore
from orbiter.model import JSON, ClientInfo, PresenceEvent
from orbiter.services.pubsub import PubSub
from orbiter.services.pushes import pushes
from orbiter.services.shared_batch import SharedBatch
from tests.support.clock import ManualClock


class PerMessage:
    """A subscriber that reads the batch's publications, encoding nothing (as polls do)."""

    client_id = "per-message"
    user: str | None = None
    info: JSON = None

    def __init__(self) -> None:
        self.got: list[object] = []
        self.batches: list[SharedBatch] = []

    def deliver_batch(self, batch: SharedBatch) -> None:
        self.batches.append(batch)
        self.got += [pub.data for pub in batch.pubs]

    def deliver_presence(self, channel: str, message: bytes) -> None:
        self.got.append(orjson.loads(message)["push"])


class Batched(PerMessage):
    """A native subscriber: reads the batch's native pushes (encoded once per batch)."""

    client_id = "batched"

    def deliver_batch(self, batch: SharedBatch) -> None:
        self.batches.append(batch)
        self.got += [orjson.loads(m)["data"] for m in pushes(batch)]


def make(config: Config | None = None) -> tuple[PubSub, MemoryBroker]:
    broker = MemoryBroker()
    return PubSub(config or Config(), broker, MemoryPresenceStore()), broker


async def test_one_iterations_publications_are_one_shared_batch() -> None:
    pubsub, _ = make()
    a, b, c = Batched(), Batched(), PerMessage()
    for sub in (a, b, c):
        await pubsub.subscribe(sub, "ch")
    for i in range(3):
        await pubsub.publish("ch", i)
    assert a.got == b.got == c.got == []
    await asyncio.sleep(0)
    assert a.got == b.got == c.got == [0, 1, 2]
    assert len(a.batches) == 1
    assert a.batches[0] is b.batches[0]
    assert [p.offset for p in a.batches[0].pubs] == [1, 2, 3]


async def test_a_channel_without_native_subscribers_is_never_json_encoded() -> None:
    pubsub, _ = make()
    only = PerMessage()
    await pubsub.subscribe(only, "quiet")
    native = [Batched(), Batched()]
    for sub in native:
        await pubsub.subscribe(sub, "mixed")
    await pubsub.publish("quiet", 1)
    await pubsub.publish("mixed", 2)
    await asyncio.sleep(0)
    assert only.got == [1]
    # pushes() encodes a batch once and keeps the pushes on it (compiled: not patched)
    assert only.batches[0].native is None
    first, second = (sub.batches[0] for sub in native)
    assert first is second
    assert first.native is not None
    assert [orjson.loads(m)["data"] for m in first.native] == [2]


async def test_publications_before_a_presence_event_stay_before_it() -> None:
    pubsub, broker = make()
    sub = PerMessage()
    await pubsub.subscribe(sub, "ch")
    await pubsub.publish("ch", "first")
    await broker.publish_presence(PresenceEvent("ch", True, ClientInfo("x", "ann", None)))
    assert sub.got == ["first", "join"]


def make_timed(write_delay: float, clock: ManualClock) -> PubSub:
    config = replace(Config(), session=SessionTiming(write_delay=write_delay))
    return PubSub(config, MemoryBroker(), MemoryPresenceStore(), clock=clock)


async def test_write_delay_holds_a_busy_channels_publications_to_write_them_together(
    manual_clock: ManualClock,
) -> None:
    pubsub = make_timed(0.05, manual_clock)
    sub = Batched()
    await pubsub.subscribe(sub, "ch")
    await pubsub.publish("ch", 0)
    await manual_clock.settle()
    assert sub.got == [0]  # a quiet channel's batch: at the end of the loop iteration
    await pubsub.publish("ch", 1)  # written to just now: busy, so this one waits
    await manual_clock.settle()
    await pubsub.publish("ch", 2)
    await manual_clock.advance(0.049)
    assert sub.got == [0]
    await manual_clock.advance(0.002)  # the write delay is over: both in one batch
    assert sub.got == [0, 1, 2]
    assert len(sub.batches) == 2


async def test_a_channel_quiet_for_twice_the_write_delay_is_written_at_once(
    manual_clock: ManualClock,
) -> None:
    pubsub = make_timed(0.02, manual_clock)
    sub, other = Batched(), Batched()
    await pubsub.subscribe(sub, "ch")
    await pubsub.subscribe(other, "busy")
    await pubsub.publish("ch", 0)
    await pubsub.publish("busy", 0)
    await manual_clock.settle()
    await pubsub.publish("busy", 1)  # waits 20 ms: it is busy
    await manual_clock.advance(0.041)  # "ch" was last written 41 ms ago: quiet again
    assert other.got == [0, 1]
    await pubsub.publish("ch", 1)
    await manual_clock.settle()
    assert sub.got == [0, 1]
    # Written to 39 ms ago: still busy, so the next one waits the write delay.
    await manual_clock.advance(0.039)
    await pubsub.publish("ch", 2)
    await manual_clock.advance(0.019)
    assert sub.got == [0, 1]
    await manual_clock.advance(0.002)
    assert sub.got == [0, 1, 2]


def test_write_delay_must_be_between_0_and_1(tmp_path: Path) -> None:
    path = tmp_path / "o.toml"
    path.write_text("[session]\nwrite_delay = 0.005\n")
    assert load_config(path).session.write_delay == 0.005
    for bad in ("-0.1", "2"):
        path.write_text(f"[session]\nwrite_delay = {bad}\n")
        with pytest.raises(ConfigError, match="write_delay"):
            load_config(path)
