"""PubSub counts the publications the engine refuses for ``limits.max_channels``, once."""

from __future__ import annotations

from collections import Counter

import pytest

from orbiter.config.settings import Config
from orbiter.engine.base import TooManyStreams
from orbiter.engine.memory import MemoryBroker, MemoryPresenceStore
from orbiter.services.pubsub import PubSub


async def test_a_publication_past_max_channels_is_refused_and_counted_once() -> None:
    counters: Counter[str] = Counter()
    pubsub = PubSub(Config(), MemoryBroker(max_streams=1), MemoryPresenceStore(), counters)
    await pubsub.publish("a", 1)
    assert pubsub.publish_at_once("a", 2) is not None  # an open stream takes more
    with pytest.raises(TooManyStreams, match="max_channels"):
        await pubsub.publish("b", 1)
    with pytest.raises(TooManyStreams):
        pubsub.publish_at_once("c", 1)
    assert counters["limit_channels"] == 2
