"""A subscribed channel whose stream the engine lost (a Redis restarted without its data)
goes on in a new epoch: the session closes with 3004 instead of taking the new offsets for
the old ones (it would drop the new stream's first publications as seen already)."""

from __future__ import annotations

import time

from orbiter.engine.memory import MemoryBroker
from orbiter.model import Publication
from orbiter.protocol.native import DisconnectCode
from tests.session.test_session import connected, drain, make, send


def _from_engine(broker: MemoryBroker, pub: Publication) -> None:
    """Hand PubSub a publication as an engine delivering another node's would."""
    assert broker._on_publication is not None
    broker._on_publication(pub)


async def test_a_publication_of_another_epoch_closes_the_session_with_3004() -> None:
    broker = MemoryBroker()
    pubsub = make(broker=broker)
    session, _ = await connected(pubsub)
    await send(session, {"id": 2, "op": "subscribe", "channel": "chat:a"})
    for i in range(2):
        await pubsub.publish("chat:a", i)
    assert [m["data"] for m in await drain(session)] == [0, 1]
    _from_engine(broker, Publication("chat:a", 1, "new-epoch", "after", time.time()))
    assert await drain(session) == []  # offset 1 again: not a duplicate, and not sent as one
    assert session.close_code is DisconnectCode.STREAM_LOST
    assert DisconnectCode.STREAM_LOST.reconnect  # the client comes back and is told


async def test_a_first_publication_in_an_epoch_after_the_one_read_is_delivered() -> None:
    broker = MemoryBroker()
    pubsub = make(broker=broker)
    session, _ = await connected(pubsub)
    [reply] = await send(session, {"id": 2, "op": "subscribe", "channel": "chat:a"})
    assert reply["result"]["offset"] == 0  # never published: nothing to miss
    _from_engine(broker, Publication("chat:a", 1, "later", "first", time.time()))
    _from_engine(broker, Publication("chat:a", 2, "later", "second", time.time()))
    assert [m["data"] for m in await drain(session)] == ["first", "second"]
    assert session.close_code is None
    # ... but one that starts past offset 1 missed some.
    _from_engine(broker, Publication("chat:a", 3, "again", "third", time.time()))
    await drain(session)
    assert session.close_code is DisconnectCode.STREAM_LOST


async def test_a_new_channel_s_first_offset_past_one_closes_too() -> None:
    broker = MemoryBroker()
    pubsub = make(broker=broker)
    session, _ = await connected(pubsub)
    await send(session, {"id": 2, "op": "subscribe", "channel": "chat:a"})
    _from_engine(broker, Publication("chat:a", 2, "later", "second", time.time()))
    assert await drain(session) == []
    assert session.close_code is DisconnectCode.STREAM_LOST


async def test_a_gap_in_the_offsets_closes_the_session_with_3004() -> None:
    # An engine that could deliver neither live nor from history what a node missed
    # (a Redis reconnect past the retained history) goes on past a gap.
    broker = MemoryBroker()
    pubsub = make(broker=broker)
    session, _ = await connected(pubsub)
    await send(session, {"id": 2, "op": "subscribe", "channel": "chat:a"})
    first = await pubsub.publish("chat:a", "first")
    assert [m["data"] for m in await drain(session)] == ["first"]
    _from_engine(broker, Publication("chat:a", 3, first.epoch, "third", time.time()))
    assert await drain(session) == []  # not sent as if the second had been
    assert session.close_code is DisconnectCode.STREAM_LOST
