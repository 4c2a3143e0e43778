"""The client session against a real PubSub and memory engine, without a network."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import orjson
import pytest

from orbiter.config.settings import AuthSettings, Config, Limits
from orbiter.engine.base import Broker, HistoryPage, HistoryPolicy
from orbiter.engine.memory import MemoryBroker, MemoryPresenceStore
from orbiter.model import StreamPosition
from orbiter.protocol.native import DisconnectCode
from orbiter.services.pubsub import PubSub
from orbiter.session.session import ClientSession
from tests.support.clock import ManualClock
from tests.support.keys import SECRET, token
from tests.support.wrapped_broker import WrappedBroker


def make(config: Config | None = None, broker: Broker | None = None) -> PubSub:
    return PubSub(config or Config(), broker or MemoryBroker(), MemoryPresenceStore())


async def drain(session: ClientSession) -> list[dict[str, Any]]:
    await asyncio.sleep(0)  # publications reach subscribers at the end of the loop iteration
    items, session.outbox._items, session.outbox._size = session.outbox._items, [], 0
    return [orjson.loads(item) for item in items]


async def send(session: ClientSession, *commands: dict[str, Any]) -> list[dict[str, Any]]:
    await session.receive(b"\n".join(orjson.dumps(c) for c in commands))
    return await drain(session)


async def connected(pubsub: PubSub, config: Config | None = None, **identity: Any):
    session = ClientSession(pubsub, config or Config(), peer="test")
    [reply] = await send(session, {"id": 1, "op": "connect", **identity})
    assert "result" in reply, reply
    return session, reply["result"]


async def test_subscribe_then_receive_publications_in_order() -> None:
    pubsub = make()
    session, _ = await connected(pubsub)
    [reply] = await send(session, {"id": 2, "op": "subscribe", "channel": "chat:a"})
    assert reply["result"]["offset"] == 0
    for i in range(3):
        await pubsub.publish("chat:a", i)
    assert [m["data"] for m in await drain(session)] == [0, 1, 2]


async def test_resubscribe_with_since_recovers_exactly_the_missed() -> None:
    pubsub = make()
    session, _ = await connected(pubsub)
    await send(session, {"id": 2, "op": "subscribe", "channel": "chat:a"})
    first = await pubsub.publish("chat:a", "seen")
    await drain(session)
    await session.finish()
    await pubsub.publish("chat:a", "missed-1")
    await pubsub.publish("chat:a", "missed-2")

    again, _ = await connected(pubsub)
    since = {"offset": first.offset, "epoch": first.epoch}
    [reply] = await send(again, {"id": 2, "op": "subscribe", "channel": "chat:a", "since": since})
    result = reply["result"]
    assert result["recovered"] is True
    assert [p["data"] for p in result["publications"]] == ["missed-1", "missed-2"]
    await pubsub.publish("chat:a", "live")
    assert [m["data"] for m in await drain(again)] == ["live"]


async def test_unrecoverable_position_is_reported() -> None:
    pubsub = make()
    session, _ = await connected(pubsub)
    [reply] = await send(
        session,
        {"id": 2, "op": "subscribe", "channel": "c", "since": {"offset": 3, "epoch": "gone"}},
    )
    assert reply["result"]["recovered"] is False
    assert reply["result"]["publications"] == []


class RacingBroker(WrappedBroker):
    """Publications land while the session reads history: the race every engine has
    (``inner``, the memory engine, publishes without it)."""

    async def history(
        self,
        channel: str,
        since: StreamPosition | None,
        policy: HistoryPolicy,
        limit: int | None = None,
    ) -> HistoryPage:
        await self.publish(channel, "during-read-1", policy)
        page = await super().history(channel, since, policy, limit)
        await self.publish(channel, "after-read", policy)
        return page


async def test_publications_racing_the_history_read_arrive_once_after_the_reply() -> None:
    broker = RacingBroker()
    pubsub = make(broker=broker)
    session, _ = await connected(pubsub)
    policy = pubsub.policy("c")
    first = await broker.inner.publish("c", "before", policy)
    since = {"offset": first.offset, "epoch": first.epoch}
    messages = await send(session, {"id": 2, "op": "subscribe", "channel": "c", "since": since})
    reply, *pushes = messages
    assert reply["id"] == 2
    assert [p["data"] for p in reply["result"]["publications"]] == ["during-read-1"]
    assert [(p["offset"], p["data"]) for p in pushes] == [(3, "after-read")]


async def test_client_publish_needs_a_rule_that_allows_it() -> None:
    pubsub = make()
    session, _ = await connected(pubsub)
    [ok] = await send(session, {"id": 2, "op": "publish", "channel": "chat:x", "data": 1})
    assert ok["result"]["offset"] == 1
    [denied] = await send(session, {"id": 3, "op": "publish", "channel": "news", "data": 1})
    assert denied["error"]["code"] == 103
    assert "news" in denied["error"]["message"]
    assert (await pubsub.history("news")).position.offset == 0


async def test_reserved_channels_cannot_be_used_by_name() -> None:
    pubsub = make()
    session, _ = await connected(pubsub)
    sub, pub = await send(
        session,
        {"id": 2, "op": "subscribe", "channel": "$key:alice, 0, /chat"},
        {"id": 3, "op": "publish", "channel": "$key:alice, 0, /chat", "data": 1},
    )
    assert sub["error"]["code"] == pub["error"]["code"] == 103
    assert pubsub.subscriber_count("$key:alice, 0, /chat") == 0


async def test_subscription_limits_and_duplicates() -> None:
    config = replace(Config(), limits=Limits(max_subscriptions=2))
    pubsub = make(config)
    session, _ = await connected(pubsub, config)
    replies = await send(
        session,
        {"id": 2, "op": "subscribe", "channel": "a"},
        {"id": 3, "op": "subscribe", "channel": "a"},
        {"id": 4, "op": "subscribe", "channel": "b"},
        {"id": 5, "op": "subscribe", "channel": "c"},
        {"id": 6, "op": "unsubscribe", "channel": "zzz"},
        {"id": 7, "op": "unsubscribe", "channel": "a"},
    )
    codes = [r.get("error", {}).get("code") for r in replies]
    assert codes == [None, 105, None, 106, 110, None]
    assert session.channels == ["b"]


async def test_connect_with_key_joins_the_key_channel_and_event_reaches_it() -> None:
    pubsub = make()
    session, result = await connected(pubsub, user="alice", location="chat", session=0)
    assert result["key"]["key"] == "alice, 0, /chat"
    assert result["key"]["channel"] == "$key:alice, 0, /chat"
    assert session.user == "alice"
    from orbiter.protocol.keys import ConnectionKey

    await pubsub.event([ConnectionKey.parse("alice,0,/chat")], "<b>hi</b>")
    [push] = await drain(session)
    assert push == {
        "push": "pub",
        "channel": "$key:alice, 0, /chat",
        "offset": 1,
        "data": "<b>hi</b>",
    }


async def test_connect_with_bad_key_fails_and_closes() -> None:
    pubsub = make()
    session = ClientSession(pubsub, Config(), peer="test")
    [reply] = await send(session, {"id": 1, "op": "connect", "user": "a,b", "location": "/x"})
    assert reply["error"]["code"] == 107
    assert "comma" in reply["error"]["message"]
    assert session.close_code is DisconnectCode.CONNECT_FAILED


async def test_slow_consumer_is_closed_without_slowing_the_channel() -> None:
    config = replace(Config(), limits=Limits(outgoing_buffer=2_000))
    pubsub = make(config)
    slow, _ = await connected(pubsub, config)
    fast, _ = await connected(pubsub, config)
    await send(slow, {"id": 2, "op": "subscribe", "channel": "c"})
    await send(fast, {"id": 2, "op": "subscribe", "channel": "c"})
    received = []
    for i in range(100):
        await pubsub.publish("c", "x" * 50 + str(i))
        received += await drain(fast)
    assert len(received) == 100
    assert slow.close_code is DisconnectCode.SLOW_CONSUMER
    assert slow.outbox.queued_bytes == 0
    await slow.finish()
    assert pubsub.subscriber_count("c") == 1


async def test_finish_leaves_every_channel_and_presence() -> None:
    pubsub = make()
    session, _ = await connected(pubsub, key="bob, 1, /room")
    await send(session, {"id": 2, "op": "subscribe", "channel": "a"})
    assert await pubsub.channels() == {"$key:bob, 1, /room": 1, "a": 1}
    await session.finish()
    await session.finish()
    assert await pubsub.channels() == {}
    assert pubsub.subscriber_count("a") == 0


@pytest.mark.parametrize("bad", [b"\xff\xfe", b"{", b"[]", b'{"id": 1}'])
async def test_bad_input_gets_an_error_and_the_session_goes_on(bad: bytes) -> None:
    pubsub = make()
    session, _ = await connected(pubsub)
    await session.receive(bad)
    [error] = await drain(session)
    assert error["error"]["code"] in (104, 107)
    [pong] = await send(session, {"id": 9, "op": "ping"})
    assert pong == {"id": 9, "result": {}}


async def test_presence_join_and_leave_once_per_user() -> None:
    pubsub = make()
    watcher, _ = await connected(pubsub)
    await send(watcher, {"id": 2, "op": "subscribe", "channel": "chat:p"})
    tab1, _ = await connected(pubsub, user="ann", location="/x", info={"color": "red"})
    tab2, _ = await connected(pubsub, user="ann", location="/x", session="2")
    for tab in (tab1, tab2):
        await send(tab, {"id": 2, "op": "subscribe", "channel": "chat:p"})
    [join] = await drain(watcher)
    assert join == {"push": "join", "channel": "chat:p", "user": "ann", "info": {"color": "red"}}
    [reply] = await send(watcher, {"id": 3, "op": "presence", "channel": "chat:p"})
    result = reply["result"]
    assert result["clients"] == 3
    assert [(u["user"], u["clients"]) for u in result["users"]] == [("ann", 2)]
    await tab1.finish()
    assert await drain(watcher) == []
    await tab2.finish()
    assert await drain(watcher) == [{"push": "leave", "channel": "chat:p", "user": "ann"}]


async def test_presence_needs_a_subscription_and_a_rule() -> None:
    pubsub = make()
    session, _ = await connected(pubsub)
    [not_subscribed] = await send(session, {"id": 2, "op": "presence", "channel": "chat:q"})
    assert not_subscribed["error"]["code"] == 110
    await send(session, {"id": 3, "op": "subscribe", "channel": "news"})
    [off] = await send(session, {"id": 4, "op": "presence", "channel": "news"})
    assert off["error"]["code"] == 103


async def test_publishes_past_the_burst_wait_for_tokens_that_come_back_at_the_rate() -> None:
    now = [1000.0]
    config = replace(Config(), limits=replace(Limits(), publish_rate=2, publish_burst=3))
    pubsub = PubSub(config, MemoryBroker(), MemoryPresenceStore(), clock=lambda: now[0])
    session, _ = await connected(pubsub, config)

    async def publish(n: int) -> bool:
        [reply] = await send(
            session, {"id": n + 10, "op": "publish", "channel": "chat:c", "data": n}
        )
        return "result" in reply

    assert [await publish(n) for n in range(4)] == [True, True, True, False]
    assert session.counters["limit_publish_rate"] == 1
    now[0] += 0.45  # two a second: not a whole token yet
    assert not await publish(4)
    now[0] += 0.05
    assert await publish(5)
    assert not await publish(6)
    now[0] += 10  # an idle connection gets its burst back, no more
    assert [await publish(n) for n in range(7, 11)] == [True, True, True, False]


async def test_a_session_ends_when_its_token_expires_unless_refreshed(
    manual_clock: ManualClock,
) -> None:
    config = replace(Config(), auth=AuthSettings(secret=SECRET))
    pubsub = make(config)
    # A token's exp is whole seconds: each of these runs out 59 to 60 s from now.
    kept, _ = await connected(pubsub, config, token=token("ann", ttl=60))
    lapsed, _ = await connected(pubsub, config, token=token("ann", ttl=60))
    await manual_clock.advance(30)
    [fresh] = await send(kept, {"id": 2, "op": "refresh", "token": token("ann", ttl=60)})
    assert "result" in fresh, fresh
    await manual_clock.advance(28.9)
    assert not lapsed.closed
    await manual_clock.advance(1.2)
    assert lapsed.close_code is DisconnectCode.TOKEN_EXPIRED
    assert lapsed.counters["token_expired"] == 1
    assert not kept.closed  # its refreshed token runs out 89 to 90 s from the start
    await manual_clock.advance(28.8)
    assert not kept.closed
    await manual_clock.advance(1.2)
    assert kept.close_code is DisconnectCode.TOKEN_EXPIRED
