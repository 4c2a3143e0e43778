"""Subscribing a session by direct call (read-only adapters), without a network."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import orjson
import pytest

from orbiter.config.settings import Config, Limits
from orbiter.engine.base import Broker
from orbiter.engine.memory import MemoryBroker, MemoryPresenceStore
from orbiter.model import StreamPosition
from orbiter.protocol.keys import ConnectionKey
from orbiter.protocol.native import ErrorCode, Refusal
from orbiter.services.pubsub import PubSub
from orbiter.session.session import ClientSession
from tests.session.test_session import RacingBroker


def make(broker: Broker | None = None, config: Config | None = None) -> PubSub:
    return PubSub(config or Config(), broker or MemoryBroker(), MemoryPresenceStore())


def session_for(pubsub: PubSub, config: Config | None = None) -> ClientSession:
    return ClientSession(pubsub, config or Config(), peer="test")


async def drain(session: ClientSession) -> list[dict[str, Any]]:
    await asyncio.sleep(0)  # publications reach subscribers at the end of the loop iteration
    items, session.outbox._items, session.outbox._size = session.outbox._items, [], 0
    return [orjson.loads(item) for item in items]


async def test_subscribe_without_since_starts_at_the_current_position() -> None:
    pubsub = make()
    first = await pubsub.publish("news", "old")
    session = session_for(pubsub)
    sub = await session.subscribe("news")
    assert sub.recovered is None
    assert sub.start == sub.position == StreamPosition(1, first.epoch)
    assert session.position("news") == StreamPosition(1, first.epoch)
    assert await drain(session) == []
    await pubsub.publish("news", "live")
    assert [m["data"] for m in await drain(session)] == ["live"]
    assert session.position("news") == StreamPosition(2, first.epoch)


async def test_recovered_publications_are_queued_as_pushes_before_live_ones() -> None:
    pubsub = make()
    seen = await pubsub.publish("news", "seen")
    await pubsub.publish("news", "missed-1")
    await pubsub.publish("news", "missed-2")
    session = session_for(pubsub)
    since = StreamPosition(seen.offset, seen.epoch)
    sub = await session.subscribe("news", since)
    assert sub.recovered is True
    assert sub.start == since
    assert sub.position == StreamPosition(3, seen.epoch)
    await pubsub.publish("news", "live")
    pushes = await drain(session)
    assert [(p["push"], p["channel"], p["offset"], p["data"]) for p in pushes] == [
        ("pub", "news", 2, "missed-1"),
        ("pub", "news", 3, "missed-2"),
        ("pub", "news", 4, "live"),
    ]


async def test_unrecoverable_since_starts_at_the_current_position_with_nothing_queued() -> None:
    pubsub = make()
    await pubsub.publish("news", "x")
    session = session_for(pubsub)
    sub = await session.subscribe("news", StreamPosition(0, "another-epoch"))
    assert sub.recovered is False
    assert sub.start == sub.position
    assert sub.position.offset == 1
    assert await drain(session) == []


async def test_publications_racing_the_history_read_are_queued_once_in_order() -> None:
    broker = RacingBroker()
    pubsub = make(broker)
    policy = pubsub.policy("c")
    first = await broker.inner.publish("c", "before", policy)
    session = session_for(pubsub)
    sub = await session.subscribe("c", StreamPosition(first.offset, first.epoch))
    assert sub.recovered is True
    assert [(p["offset"], p["data"]) for p in await drain(session)] == [
        (2, "during-read-1"),
        (3, "after-read"),
    ]
    assert session.position("c") == StreamPosition(3, first.epoch)


@pytest.mark.parametrize(
    ("channel", "code"),
    [
        ("$key:a, 0, /x", ErrorCode.PERMISSION_DENIED),
        ("", ErrorCode.BAD_REQUEST),
        ("bad\nname", ErrorCode.BAD_REQUEST),
    ],
)
async def test_the_subscribe_command_checks_apply(channel: str, code: ErrorCode) -> None:
    session = session_for(make())
    with pytest.raises(Refusal) as refused:
        await session.subscribe(channel)
    assert refused.value.code is code
    assert session.channels == []


async def test_twice_and_past_the_limit_are_refused() -> None:
    config = replace(Config(), limits=replace(Limits(), max_subscriptions=2))
    session = session_for(make(config=config), config)
    await session.subscribe("a")
    with pytest.raises(Refusal) as twice:
        await session.subscribe("a")
    assert twice.value.code is ErrorCode.ALREADY_SUBSCRIBED
    await session.subscribe("b")
    with pytest.raises(Refusal) as over:
        await session.subscribe("c")
    assert over.value.code is ErrorCode.LIMIT_EXCEEDED
    assert session.channels == ["a", "b"]


async def test_connect_key_joins_the_key_channel_as_its_user() -> None:
    pubsub = make()
    key = ConnectionKey.parse("alice, 0, /chat")
    session = session_for(pubsub)
    sub = await session.connect_key(key)
    assert (session.key, session.user, sub.channel) == (key, "alice", key.channel)
    await pubsub.event([key], "<b>hi</b>")
    [push] = await drain(session)
    assert (push["channel"], push["data"]) == ("$key:alice, 0, /chat", "<b>hi</b>")
    with pytest.raises(Refusal) as again:
        await session.connect_key(key)
    assert again.value.code is ErrorCode.ALREADY_CONNECTED


async def test_position_is_none_when_not_subscribed_and_finish_leaves_channels() -> None:
    pubsub = make()
    session = session_for(pubsub)
    assert session.position("a") is None
    await session.subscribe("a")
    assert pubsub.subscriber_count("a") == 1
    await session.finish()
    assert pubsub.subscriber_count("a") == 0
    assert session.position("a") is None
