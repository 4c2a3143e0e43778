"""What only the Redis engine has: several nodes on one Redis, data that expires before its
stream position, and a Redis that goes away. Against a real ``redis-server`` the tests start
(``tests/support/redis_server.py``); the contract every engine keeps is ``test_contract.py``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
import uvloop

from orbiter.engine.base import EngineUnavailable, HistoryPolicy, PublishFailed
from orbiter.engine.redis import RedisBroker, RedisKeys, RedisPresenceStore
from orbiter.engine.redis_publishing import (
    _PUBLISH_MANY,
    NAMES_KEPT,
    PUBLISH_MANY_MAX,
    Call,
    OneLink,
    Publisher,
    _policy_args,
    _Queued,
)
from orbiter.engine.redis_wire import PubSubLink, pack_command
from orbiter.model import ClientInfo, PresenceEvent, Publication, StreamPosition
from tests.support.redis_monitor import ScriptCalls
from tests.support.redis_relay import RedisRelay
from tests.support.redis_server import RedisServer
from tests.support.waiting import until

POLICY = HistoryPolicy(size=100, ttl=60.0, meta_ttl=600.0)

Brokers = Callable[[], Awaitable[RedisBroker]]


@pytest.fixture
async def brokers(redis_server: RedisServer, redis_prefix: str) -> AsyncIterator[Brokers]:
    """Make started brokers on the test's Redis and prefix (nodes of one cluster)."""
    made: list[RedisBroker] = []

    async def make() -> RedisBroker:
        broker = RedisBroker(redis_server.url, prefix=redis_prefix)
        await broker.start()
        made.append(broker)
        return broker

    yield make
    for broker in made:
        await broker.close()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of the test's own, which it may stop and start again."""
    server = RedisServer()
    yield server
    server.close()


def _receiver(broker: RedisBroker) -> list[Publication]:
    got: list[Publication] = []

    def presence(_: PresenceEvent) -> None:
        pass

    broker.set_handlers(got.append, presence)
    return got


@pytest.fixture
async def script_calls(
    redis_server: RedisServer, redis_prefix: str
) -> AsyncIterator[Callable[[], Awaitable[ScriptCalls]]]:
    """Watch the publish-script calls of the test's brokers from now on (``MONITOR``):
    the number of publications of each call."""
    watching: list[ScriptCalls] = []

    async def watch() -> ScriptCalls:
        calls = ScriptCalls(redis_server.port, redis_prefix)
        await calls.start()
        watching.append(calls)
        return calls

    yield watch
    for calls in watching:
        await calls.close()


async def test_a_second_node_gets_the_first_ones_publications_once_in_order(brokers) -> None:
    a, b = await brokers(), await brokers()
    got_a, got_b = _receiver(a), _receiver(b)
    await a.subscribe("c")
    await b.subscribe("c")
    # Concurrent publishers on both nodes: one order, given by the offsets, everywhere.
    pubs = await asyncio.gather(
        *(node.publish("c", i, POLICY) for i in range(100) for node in (a, b))
    )
    assert sorted(p.offset for p in pubs) == list(range(1, 201))
    await until(lambda: len(got_a) >= 200 and len(got_b) >= 200)
    await asyncio.sleep(0.05)
    for got in (got_a, got_b):
        assert [p.offset for p in got] == list(range(1, 201))
    by_offset = {p.offset: p.data for p in pubs}
    assert [p.data for p in got_b] == [by_offset[p.offset] for p in got_b]


async def test_publications_queued_together_go_in_one_pipeline(brokers, script_calls) -> None:
    broker = await brokers()
    batches = await script_calls()
    futures = [broker.publish_soon("c", i, POLICY) for i in range(50)]
    pubs = [await f for f in futures]
    assert [p.offset for p in pubs] == list(range(1, 51))  # queued order is offset order
    await until(lambda: sum(batches.calls) >= 50)
    assert batches.calls == [50]


async def test_flush_sends_what_a_read_queued_in_that_iteration(brokers, script_calls) -> None:
    # Broker.flush (the fast publish path and the native read call it): the first three,
    # flushed, are sent at once; the two queued after them in the same iteration wait for
    # that pipeline's answer. Without the flush all five would go as one pipeline.
    broker = await brokers()
    batches = await script_calls()
    futures = [broker.publish_soon("c", i, POLICY) for i in range(3)]
    broker.flush()
    futures += [broker.publish_soon("c", i, POLICY) for i in range(3, 5)]
    pubs = [await f for f in futures]
    assert [(p.offset, p.data) for p in pubs] == [(i + 1, i) for i in range(5)]
    await until(lambda: sum(batches.calls) >= 5)
    assert batches.calls == [3, 2]


async def test_epoch_and_offset_outlive_the_history_ttl(brokers) -> None:
    broker = await brokers()
    policy = HistoryPolicy(size=10, ttl=1.0, meta_ttl=600.0)
    first = await broker.publish("c", "a", policy)
    await broker.publish("c", "b", policy)
    await asyncio.sleep(1.2)  # the history stream expired; the stream's position did not
    page = await broker.history("c", None, policy)
    assert page.publications == []
    assert page.position == StreamPosition(2, first.epoch)
    behind = await broker.history("c", StreamPosition(1, first.epoch), policy)
    assert not behind.recoverable  # told, not handed an empty page as if nothing was missed
    level = await broker.history("c", StreamPosition(2, first.epoch), policy)
    assert level.recoverable
    after = await broker.publish("c", "c", policy)
    assert (after.offset, after.epoch) == (3, first.epoch)
    caught = await broker.history("c", level.position, policy)
    assert caught.recoverable
    assert [p.data for p in caught.publications] == ["c"]


async def test_a_node_catches_up_from_history_after_its_subscription_dropped(brokers) -> None:
    a, b = await brokers(), await brokers()
    got = _receiver(b)
    await b.subscribe("c")
    await a.publish("c", 0, POLICY)
    await until(lambda: len(got) == 1)
    admin = aioredis.Redis.from_url(b.url)
    await admin.client_kill_filter(_type="pubsub")
    await admin.aclose()
    for i in range(1, 6):  # published while b is not subscribed
        await a.publish("c", i, POLICY)
    # Nothing more is published: the reconnect itself reads what was missed.
    await until(lambda: len(got) >= 6)
    await a.publish("c", 6, POLICY)
    await until(lambda: len(got) >= 7)
    await asyncio.sleep(0.05)
    assert [p.data for p in got] == list(range(7))
    assert [p.offset for p in got] == list(range(1, 8))


async def test_a_publication_after_a_gap_is_preceded_by_the_missed_ones(brokers) -> None:
    a, b = await brokers(), await brokers()
    got = _receiver(b)
    await b.subscribe("c")
    first = await a.publish("c", 1, POLICY)
    await until(lambda: len(got) == 1)
    # As if offsets 2 and 3 had been lost on the way (a message the connection dropped):
    b._last["c"] = StreamPosition(first.offset - 1, first.epoch)
    got.clear()
    await a.publish("c", 2, POLICY)
    await until(lambda: len(got) >= 2)
    await asyncio.sleep(0.05)
    assert [p.offset for p in got] == [1, 2]  # from history, then the one that arrived


async def test_a_redis_restart_fails_publishes_and_refuses_recovery(own_redis) -> None:
    publisher = RedisBroker(own_redis.url, prefix="r")
    subscriber = RedisBroker(own_redis.url, prefix="r")
    await publisher.start()
    await subscriber.start()
    try:
        got = _receiver(subscriber)
        await subscriber.subscribe("c")
        before = [await publisher.publish("c", i, POLICY) for i in range(3)]
        await until(lambda: len(got) == 3)
        own_redis.stop()
        with pytest.raises(PublishFailed):  # never a false OK
            await publisher.publish("c", "lost", POLICY)
        with pytest.raises(EngineUnavailable):
            await publisher.history("c", None, POLICY)
        await until(lambda: not subscriber.connected)
        assert subscriber.stats()["engine_up"] == 0  # reported down (GET /api/stats)
        with pytest.raises(EngineUnavailable):  # a subscription Redis cannot confirm
            await subscriber.subscribe("other")
        assert "other" not in subscriber._subscribed  # not taken again on reconnect
        own_redis.start()  # without persistence: every stream is gone
        await until(lambda: subscriber.connected)
        after = await publisher.publish("c", "new", POLICY)
        assert after.epoch != before[-1].epoch
        await until(lambda: len(got) == 4)
        assert [p.data for p in got] == [0, 1, 2, "new"]
        last = StreamPosition(before[-1].offset, before[-1].epoch)
        page = await publisher.history("c", last, POLICY)
        assert not page.recoverable
        assert page.publications == []
    finally:
        await publisher.close()
        await subscriber.close()


async def test_presence_is_shared_and_a_dead_nodes_clients_expire(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    live = RedisPresenceStore(redis_server.url, prefix=redis_prefix, ttl=1.0)
    dead = RedisPresenceStore(redis_server.url, prefix=redis_prefix, ttl=1.0)
    try:
        assert await live.add("room", ClientInfo("c1", "ann"))
        assert await dead.add("room", ClientInfo("c2", "bob", {"x": 1}))
        assert not await dead.add("room", ClientInfo("c3", "ann"))  # ann is there already
        assert await live.channels() == {"room": 3}
        await dead.close()  # a node gone without a word: its clients are not refreshed
        await asyncio.sleep(2.2)
        assert await live.clients("room") == [ClientInfo("c1", "ann")]  # refreshed by its node
        assert await live.channels() == {"room": 1}
        assert await live.remove("room", "c1") == ClientInfo("c1", "ann")
        assert await live.channels() == {}
    finally:
        await live.close()


async def test_a_redis_that_lost_its_data_gives_every_channel_a_new_epoch(own_redis) -> None:
    broker = RedisBroker(own_redis.url, prefix="r")
    await broker.start()
    try:
        before = await broker.publish("c", 1, POLICY)
        void = (await broker.history("never", None, POLICY)).position
        failures = broker.failures
        own_redis.stop()
        own_redis.start()
        await until(lambda: broker.failures > failures and broker.connected)
        after = await broker.publish("c", 2, POLICY)
        assert after.offset == 1
        assert after.epoch != before.epoch  # the same node offering the same epoch again
        page = await broker.history("never", void, POLICY)  # would be taken for the old stream
        assert page.position.epoch != void.epoch
        assert not page.recoverable
    finally:
        await broker.close()


async def test_publications_in_a_new_epoch_before_a_node_reconnects_reach_it(own_redis) -> None:
    # The subscriber waits half a second before reconnecting; meanwhile Redis, restarted
    # without its data, gets two publications of the channel's new stream.
    subscriber = RedisBroker(own_redis.url, prefix="r", backoff=(0.5, 0.5))
    await subscriber.start()
    publishers = []
    try:
        got = _receiver(subscriber)
        await subscriber.subscribe("c")
        publishers.append(RedisBroker(own_redis.url, prefix="r"))
        await publishers[-1].start()
        old = [await publishers[-1].publish("c", i, POLICY) for i in range(3)]
        await until(lambda: len(got) == 3)
        own_redis.stop()
        own_redis.start()
        publishers.append(RedisBroker(own_redis.url, prefix="r"))
        await publishers[-1].start()
        new = [await publishers[-1].publish("c", f"n{i}", POLICY) for i in range(2)]
        assert not subscriber.connected
        await until(lambda: len(got) == 5)
        new.append(await publishers[-1].publish("c", "n2", POLICY))
        await until(lambda: len(got) == 6)
        await asyncio.sleep(0.05)
        assert [p.data for p in got] == [0, 1, 2, "n0", "n1", "n2"]
        assert [(p.offset, p.epoch) for p in got] == [(p.offset, p.epoch) for p in old + new]
        assert new[0].epoch != old[0].epoch
    finally:
        for broker in [subscriber, *publishers]:
            await broker.close()


async def test_every_acknowledged_publication_arrives_once_in_order_across_reconnects(
    brokers,
) -> None:
    publishers = [await brokers(), await brokers()]
    subscribers = [await brokers(), await brokers()]
    received = [_receiver(node) for node in subscribers]
    for node in subscribers:
        await node.subscribe("c")
    admin = aioredis.Redis.from_url(subscribers[0].url)
    acknowledged: list[Publication] = []
    policy = HistoryPolicy(size=1000, ttl=60.0, meta_ttl=600.0)  # history covers every gap

    async def publish(node: RedisBroker, count: int) -> None:
        for i in range(count):
            acknowledged.append(await node.publish("c", i, policy))
            await asyncio.sleep(0.001)  # a stream over the cuts, not a burst before them

    async def cut_subscriptions() -> None:
        for _ in range(3):  # every node's pub/sub connection, three times mid-stream
            await asyncio.sleep(0.04)
            await admin.client_kill_filter(_type="pubsub")

    await asyncio.gather(*(publish(node, 150) for node in publishers), cut_subscriptions())
    await admin.aclose()
    assert len(acknowledged) == 300
    for got in received:
        await until(lambda got=got: len(got) >= 300)  # type: ignore[misc]
    await asyncio.sleep(0.1)
    expected = sorted((p.offset, p.data) for p in acknowledged)
    assert [offset for offset, _ in expected] == list(range(1, 301))
    for got in received:
        assert [(p.offset, p.data) for p in got] == expected


async def test_a_survey_gets_every_other_nodes_answer_and_a_stopped_node_leaves(
    brokers: Brokers,
) -> None:
    nodes = [await brokers() for _ in range(3)]

    def answerer(index: int) -> Callable[[object], object]:
        return lambda argument: {"node": index, "asked": argument}

    for index, node in enumerate(nodes):
        node.set_answerer("who", answerer(index))
    survey = await nodes[0].survey("who", "x")
    assert survey.nodes == 3
    assert sorted(answer["node"] for answer in survey.answers) == [1, 2]  # not its own
    assert all(answer["asked"] == "x" for answer in survey.answers)
    unknown = await nodes[1].survey("nobody answers this", None)
    assert unknown.answers == [None, None]  # a kind without an answerer: None
    await nodes[2].close()  # takes its entry out at once
    survey = await nodes[0].survey("who", None)
    assert survey.nodes == 2
    assert [answer["node"] for answer in survey.answers] == [1]


async def test_subscribed_sees_other_nodes_subscriptions(brokers: Brokers) -> None:
    first, second = await brokers(), await brokers()
    await second.subscribe("theirs")
    assert await first.subscribed(["theirs", "none"]) == {"theirs"}
    await second.unsubscribe("theirs")
    await _until_async(lambda: first.subscribed(["theirs"]), set())


async def _until_async(read: Callable[[], Awaitable[object]], expected: object) -> None:
    for _ in range(200):
        if await read() == expected:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never {expected!r}")


async def test_a_cut_pub_sub_connection_fails_no_publication_under_way(brokers: Brokers) -> None:
    """Only the pub/sub connection is cut (a client kill, a proxy's idle timeout): the
    publications in flight on the healthy command connections are answered, not failed."""
    publisher = await brokers()
    admin = aioredis.Redis.from_url(publisher.url)
    policy = HistoryPolicy(size=10, ttl=60.0, meta_ttl=600.0)

    cutting = True

    async def publish() -> int:
        done = 0
        while cutting:  # publications in flight at every cut
            await asyncio.gather(*(publisher.publish(f"cut{k}", done, policy) for k in range(4)))
            done += 4
        return done

    async def cut() -> None:
        nonlocal cutting
        for _ in range(15):
            await asyncio.sleep(0.02)
            await admin.client_kill_filter(_type="pubsub")
        cutting = False

    try:
        done, _ = await asyncio.gather(publish(), cut())  # PublishFailed would come out here
    finally:
        await admin.aclose()
    assert done > 100


async def test_a_burst_past_the_pool_waits_for_connections(brokers: Brokers) -> None:
    """More commands at once than the pool has connections (2,000 clients subscribing
    together, each reading history) queue for a connection instead of failing:
    redis-py's plain pool refused the 101st with "Too many connections"."""
    from orbiter.engine import redis as redis_engine

    broker = await brokers()
    await broker.publish("burst", "x", POLICY)
    reads = 5 * redis_engine.POOL_SIZE
    pages = await asyncio.gather(
        *(broker.history("burst", None, POLICY) for _ in range(reads)), return_exceptions=True
    )
    failed = [page for page in pages if isinstance(page, BaseException)]
    assert failed == []
    assert all(len(page.publications) == 1 for page in pages if not isinstance(page, BaseException))


async def test_a_refused_publication_in_a_pipeline_fails_alone_and_in_place(
    brokers: Brokers, script_calls: Callable[[], Awaitable[ScriptCalls]]
) -> None:
    """Publications queued together go in one pipeline; one that Redis refuses (its
    channel's meta key is not a hash: WRONGTYPE) fails with its own answer, and every
    other one is kept, in the order queued, each answered with its own offset."""
    broker = await brokers()
    got = _receiver(broker)
    for channel in ("a", "b", "bad"):
        await broker.subscribe(channel)
    admin = aioredis.Redis.from_url(broker.url)
    await admin.set(broker.keys.meta("bad"), "not a hash")
    await admin.aclose()
    batches = await script_calls()
    channels = ["a", "bad", "a", "b", "bad", "b", "a"]
    futures = [broker.publish_soon(channel, i, POLICY) for i, channel in enumerate(channels)]
    results = await asyncio.gather(*futures, return_exceptions=True)
    await until(lambda: sum(batches.calls) >= len(channels))
    assert batches.calls == [len(channels)]
    for i, (channel, result) in enumerate(zip(channels, results, strict=True)):
        if channel == "bad":
            assert isinstance(result, PublishFailed), (i, result)
            assert "WRONGTYPE" in str(result)
        else:
            assert isinstance(result, Publication), (i, result)
            assert (result.channel, result.data) == (channel, i)
    answered = {
        ch: [r.offset for r in results if isinstance(r, Publication) and r.channel == ch]
        for ch in ("a", "b")
    }
    assert answered == {"a": [1, 2, 3], "b": [1, 2]}
    await until(lambda: len(got) >= 5)
    await asyncio.sleep(0.05)
    assert [(p.channel, p.offset, p.data) for p in got] == [
        ("a", 1, 0),
        ("a", 2, 2),
        ("b", 1, 3),
        ("b", 2, 5),
        ("a", 3, 6),
    ]


async def test_a_publishing_connection_cut_fails_its_pipeline_then_a_new_one_serves(
    brokers: Brokers,
) -> None:
    """The connection publications go through is killed between two pipelines: the next
    pipeline is never answered a false OK (it fails, or goes through a new connection),
    and the one after it is kept."""
    broker = await brokers()
    await broker.publish("k", 0, POLICY)  # the publishing connection exists
    admin = aioredis.Redis.from_url(broker.url)
    await admin.client_kill_filter(_type="normal", skipme=True)
    await admin.aclose()
    answer: Publication | None = None
    with contextlib.suppress(PublishFailed):
        answer = await broker.publish("k", 1, POLICY)
    pub = await broker.publish("k", 2, POLICY)
    page = await broker.history("k", None, POLICY)
    kept = {p.offset: p.data for p in page.publications}
    if answer is not None:  # answered OK: then it is kept, where its answer said
        assert kept[answer.offset] == 1
    assert kept[pub.offset] == 2
    assert sorted(kept) == list(range(1, pub.offset + 1))


async def test_publications_after_redis_lost_its_scripts_are_kept_once(brokers: Brokers) -> None:
    """``SCRIPT FLUSH`` (as a restarted Redis has no scripts): the pipeline refused for it
    is sent again once the script is loaded, and each publication is kept exactly once."""
    broker = await brokers()
    first = await broker.publish("s", 0, POLICY)
    admin = aioredis.Redis.from_url(broker.url)
    await admin.script_flush()
    await admin.aclose()
    futures = [broker.publish_soon("s", i, POLICY) for i in range(1, 4)]
    pubs = [await future for future in futures]
    assert [p.offset for p in pubs] == [first.offset + 1, first.offset + 2, first.offset + 3]
    page = await broker.history("s", None, POLICY)
    assert [(p.offset, p.data) for p in page.publications] == [(1, 0), (2, 1), (3, 2), (4, 3)]


async def test_a_redis_that_does_not_answer_fails_the_pipeline_then_a_new_link_serves(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    """Redis holds every client's commands (``CLIENT PAUSE``) past the command timeout: the
    publication waiting for its answer fails (never an OK that Redis did not give), and
    once Redis answers again the next one goes through a new connection."""
    broker = RedisBroker(redis_server.url, prefix=redis_prefix, command_timeout=0.3)
    await broker.start()
    try:
        await _unanswered_then_served(broker)
    finally:
        await broker.close()


async def _unanswered_then_served(broker: RedisBroker) -> None:
    await broker.publish("p", 0, POLICY)
    admin = aioredis.Redis.from_url(broker.url)
    await admin.client_pause(1500, all=True)
    await admin.aclose()
    started = asyncio.get_running_loop().time()
    with pytest.raises(PublishFailed, match="did not answer within"):
        await broker.publish("p", 1, POLICY)
    assert asyncio.get_running_loop().time() - started < 1.2  # the timeout, not the pause
    await asyncio.sleep(1.5)  # the pause is over
    pub = await broker.publish("p", 2, POLICY)
    page = await broker.history("p", None, POLICY)
    assert page.publications[-1].data == 2
    assert page.position.offset == pub.offset


async def test_a_pipeline_of_several_script_calls_keeps_queue_order_when_the_script_is_lost(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    """More than PUBLISH_MANY_MAX publications queued together are several script calls.
    After ``SCRIPT FLUSH``, another node loads the script between the first call and the
    next (deterministic here: a relay holds the link after the first call until Redis
    answered it and the script is loaded): every publication is kept exactly once, and
    each channel's in the order queued, answers and history alike. Sent by ``EVALSHA``,
    the first call was refused (NOSCRIPT) and sent again after the later ones had run."""
    relay = RedisRelay(redis_server.port)
    await relay.start()
    broker = RedisBroker(relay.url, prefix=redis_prefix)
    admin = aioredis.Redis.from_url(redis_server.url)
    policy = HistoryPolicy(size=1000, ttl=60.0, meta_ttl=600.0)
    try:
        await broker.start()
        await broker.publish("a", -1, policy)  # the publishing link is made
        await admin.script_flush()
        void = broker.keys.void.encode()
        hold = relay.hold_after(lambda words: words[0] in (b"EVAL", b"EVALSHA") and void in words)
        queued = [("a" if i % 3 else "b", i) for i in range(3 * PUBLISH_MANY_MAX - 50)]
        futures = [broker.publish_soon(channel, i, policy) for channel, i in queued]
        await asyncio.wait_for(hold.answered.wait(), 5)
        await admin.script_load(_PUBLISH_MANY)  # as another node would, after its NOSCRIPT
        hold.release()
        pubs = await asyncio.wait_for(asyncio.gather(*futures), 10)
        for channel, first in (("a", 2), ("b", 1)):
            answered = [(p.offset, p.data) for p in pubs if p.channel == channel]
            datas = [i for c, i in queued if c == channel]
            assert answered == list(enumerate(datas, first)), channel
            page = await broker.history(channel, None, policy)
            assert [p.data for p in page.publications] == ([-1] if channel == "a" else []) + datas
    finally:
        await broker.close()
        await admin.aclose()
        await relay.close()


async def test_a_subscribe_sent_just_as_redis_dies_fails_at_once(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    """The pub/sub connection is lost right after Redis read a SUBSCRIBE and before its
    confirmation came back (deterministic here: a relay forwards the SUBSCRIBE, then cuts
    the connection and refuses new ones, as a Redis that died): the subscriber gets
    EngineUnavailable at once, not after PING_TIMEOUT; once Redis is back it subscribes."""
    relay = RedisRelay(redis_server.port)
    await relay.start()
    broker = RedisBroker(relay.url, prefix=redis_prefix, backoff=(0.05, 0.2))
    loop = asyncio.get_running_loop()
    try:
        await broker.start()
        name = broker.keys.pubsub("late").encode()
        cut = relay.cut_after(lambda words: words[0].upper() == b"SUBSCRIBE" and name in words)
        started = loop.time()
        with pytest.raises(EngineUnavailable, match="lost the pub/sub connection"):
            await asyncio.wait_for(broker.subscribe("late"), 3)  # PING_TIMEOUT is 15 s
        assert cut.is_set()
        assert loop.time() - started < 1.0
        relay.restore()
        await until(lambda: broker.connected)
        await broker.subscribe("late")
    finally:
        await broker.close()
        await relay.close()


async def test_publications_of_different_policies_in_one_call_keep_their_own_history(
    brokers: Brokers, script_calls: Callable[[], Awaitable[ScriptCalls]]
) -> None:
    """One script call carries publications of several policies, alternating: each is
    packed with its own policy's arguments, and each channel's history is trimmed by its
    own size."""
    broker = await brokers()
    batches = await script_calls()
    short, long = HistoryPolicy(size=2, ttl=60.0, meta_ttl=600.0), POLICY
    queued = [("short" if i % 2 else "long", i) for i in range(20)]
    futures = [
        broker.publish_soon(channel, i, short if channel == "short" else long)
        for channel, i in queued
    ]
    await asyncio.gather(*futures)
    await until(lambda: sum(batches.calls) >= len(queued))
    assert batches.calls == [len(queued)]
    kept_short = await broker.history("short", None, POLICY)
    kept_long = await broker.history("long", None, POLICY)
    assert [p.data for p in kept_short.publications] == [17, 19]
    assert [p.data for p in kept_long.publications] == list(range(0, 20, 2))


async def test_tags_and_data_reach_other_nodes_and_history_framed_either_way(
    brokers: Brokers,
) -> None:
    """Publications with tags and without, in one script call (framed apart by the script:
    ``:0:`` when there are none), reach another node and history as published, colons and
    all."""
    publisher, other = await brokers(), await brokers()
    got = _receiver(other)
    await other.subscribe("tagged")
    sent = [
        ("a:b", None),
        ({"x": "1:2:3"}, {"k": "v:w"}),
        (":", {"colon:key": ":"}),
        ("", None),
    ]
    futures = [publisher.publish_soon("tagged", data, POLICY, tags) for data, tags in sent]
    answers = await asyncio.gather(*futures)
    assert [(p.offset, p.tags) for p in answers] == [(i + 1, t) for i, (_, t) in enumerate(sent)]
    await until(lambda: len(got) == len(sent))
    assert [(p.offset, p.data, p.tags) for p in got] == [
        (i + 1, data, tags) for i, (data, tags) in enumerate(sent)
    ]
    assert got == answers
    page = await publisher.history("tagged", None, POLICY)
    assert [(p.data, p.tags) for p in page.publications] == sent


async def test_a_negative_history_size_keeps_no_history_and_still_publishes(
    brokers: Brokers,
) -> None:
    """A history size below zero is none (the script is sent zero): the publication is kept
    in the stream's position and delivered, and no history is."""
    broker = await brokers()
    got = _receiver(broker)
    await broker.subscribe("none")
    policy = HistoryPolicy(size=-1, ttl=60.0, meta_ttl=600.0)
    first = await broker.publish("none", 1, policy)
    second = await broker.publish("none", 2, policy)
    assert (first.offset, second.offset) == (1, 2)
    await until(lambda: len(got) == 2)
    page = await broker.history("none", None, POLICY)
    assert page.position == StreamPosition(2, first.epoch)
    assert page.publications == []


async def test_a_pub_sub_link_handles_messages_in_order_pausing_for_what_it_awaits(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    """``PubSubLink``: messages the stream had buffered are handled at the takeover; a
    message whose handling must be awaited holds the later ones back until it is done
    (then they come, in order); a handler's other exceptions are logged and skipped; a
    ``RedisError`` it raises ends the link."""
    await _pub_sub_link_scenario(redis_server, redis_prefix)


def test_a_pub_sub_link_reads_uvloops_transports(redis_server: RedisServer, redis_prefix: str):
    """The same on uvloop, whose transports (no ``asyncio.Transport`` subclasses) a server
    runs on."""
    uvloop.run(_pub_sub_link_scenario(redis_server, redis_prefix))


async def _pub_sub_link_scenario(redis_server: RedisServer, redis_prefix: str) -> None:
    from redis.asyncio.connection import Connection
    from redis.exceptions import RedisError

    channel = f"{redis_prefix}:link".encode()
    publisher = aioredis.Redis(port=redis_server.port)
    connection = Connection(port=redis_server.port, protocol=2)
    await connection.connect()  # type: ignore[no-untyped-call]
    await connection.send_command("SUBSCRIBE", channel)
    await connection.read_response()
    await publisher.publish(channel, b"0")
    await asyncio.sleep(0.1)  # in the stream's buffer, read by nobody yet
    handled: list[bytes] = []
    hold: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def take(message: object) -> Awaitable[None] | None:
        assert isinstance(message, list)
        data = message[2]
        if data == b"bad":
            raise ValueError("a message this node cannot read")
        if data == b"end":
            raise RedisError("the link ends")
        handled.append(data)
        return hold if data == b"1" else None

    link = PubSubLink.take_over(connection, take, lambda error: None)
    try:
        assert handled == [b"0"]
        together = publisher.pipeline(transaction=False)  # one read, most likely
        for data in (b"1", b"2", b"bad"):
            together.publish(channel, data)
        await together.execute()
        await asyncio.sleep(0.1)
        await publisher.publish(channel, b"3")  # another read, while reading is paused
        await asyncio.sleep(0.1)
        assert handled == [b"0", b"1"]  # 2 and 3 wait for what 1 awaits
        hold.set_result(None)
        await until(lambda: len(handled) == 4)
        assert handled == [b"0", b"1", b"2", b"3"]
        await publisher.publish(channel, b"end")
        with pytest.raises(RedisError, match="the link ends"):
            await asyncio.wait_for(link.done, 5)
    finally:
        await link.stopped()
        await connection.disconnect()
        await publisher.aclose()


def _ignored(outcome: Publication | BaseException) -> None:
    """Told how a publication went: nobody asks here (nothing is sent)."""


async def test_a_script_call_is_packed_as_hiredis_packs_it_and_names_kept_are_bounded() -> None:
    """The publish path packs its script calls itself: the bytes hiredis's ``pack_command``
    makes of the same command (by SHA-1 and with the text; tags or none; a channel
    name beyond ASCII; one channel under two policies in a call), again from what it
    kept framed; and it keeps at most :data:`NAMES_KEPT` channels' arguments."""
    keys = RedisKeys("p")
    publisher = Publisher(OneLink(lambda: None), keys, _PUBLISH_MANY, lambda: "v1", lambda: None)  # type: ignore[arg-type,return-value]
    items = [
        _Queued(channel, {"n": i, "s": "é:"}, policy, tags, _ignored)
        for i, (channel, policy, tags) in enumerate(
            [
                ("a", POLICY, None),
                ("salle-é", HistoryPolicy(size=0, ttl=0.5, meta_ttl=2.0), {"k": "v"}),
                ("a", HistoryPolicy(size=-3, ttl=1e12, meta_ttl=0.0), None),
            ]
        )
    ]
    items.append(_Queued("big", "x" * 3000, POLICY, None, _ignored))  # past _HEADS
    for with_text in (False, True, False):
        names: list[str] = [keys.void_of("a")]
        args: list[str | bytes | int] = ["v1"]
        for item in items:
            size, ttl_ms, period = _policy_args(item.policy)
            names += (keys.meta(item.channel), keys.history(item.channel))
            tags = orjson.dumps(item.tags) if item.tags else b""
            args += (keys.pubsub(item.channel), size, ttl_ms, period, tags, orjson.dumps(item.data))
        script = _PUBLISH_MANY if with_text else publisher._sha
        verb = "EVAL" if with_text else "EVALSHA"
        expected = pack_command((verb, script, len(names), *names, *args))
        assert publisher._packed(Call(items, "", with_text=with_text)) == expected
    for i in range(NAMES_KEPT + 10):
        publisher._framed(f"many{i}", POLICY)
    assert 0 < len(publisher._names) <= NAMES_KEPT

    class SlotKeys(RedisKeys):  # a void epoch's key per channel, as a cluster's per slot
        def void_of(self, channel: str) -> str:
            return f"{self.prefix}:void:{channel}"

    no_link = OneLink(lambda: None)  # type: ignore[arg-type,return-value]
    slotted = Publisher(no_link, SlotKeys("p"), _PUBLISH_MANY, lambda: "v1", lambda: None)
    for first in (items[1], items[0]):  # the void key is the first publication's, each call
        call = [first, *(item for item in items if item is not first)]
        packed = slotted._packed(Call(call, ""))
        assert packed.count(b":void:") == 1
        assert f"p:void:{first.channel}".encode() in packed


def test_each_message_keeps_its_own_time_and_epoch_parsed_once_in_a_row() -> None:
    """The delivery parses a time or an epoch once for the messages in a row that carry
    it: each publication still gets its own."""
    from orbiter.engine.redis_delivery import Delivery

    async def no_catch_up(channel: str, pub: Publication | None) -> None:
        raise AssertionError("no catch-up expected")

    delivery = Delivery(no_catch_up, frozenset(), lambda name, data: None)
    got: list[Publication] = []
    delivery.on_publication = got.append
    for channel in ("a", "b"):
        delivery.subscribed[channel] = f"x:{channel}".encode()
        delivery.channel_of[f"x:{channel}".encode()] = channel
    frames = [
        ("a", b"1:e1:10.5:0:1"),
        ("b", b"1:e1:10.5:0:2"),
        ("a", b"2:e1:11.25:0:3"),
        ("b", b"2:e1:11.25:0:4"),
        ("a", b"3:e1:11.25:0:5"),
    ]
    for channel, payload in frames:
        assert delivery.take([b"message", f"x:{channel}".encode(), payload]) is None
    delivery.last["b"] = StreamPosition(0, "e2")  # b's stream started again: another epoch
    assert delivery.take([b"message", b"x:b", b"1:e2:12.0:0:6"]) is None
    assert delivery.take([b"message", b"x:a", b"4:e1:12.0:0:7"]) is None
    assert [(p.channel, p.offset, p.epoch, p.time, p.data) for p in got] == [
        ("a", 1, "e1", 10.5, 1),
        ("b", 1, "e1", 10.5, 2),
        ("a", 2, "e1", 11.25, 3),
        ("b", 2, "e1", 11.25, 4),
        ("a", 3, "e1", 11.25, 5),
        ("b", 1, "e2", 12.0, 6),
        ("a", 4, "e1", 12.0, 7),
    ]


def test_an_answer_not_one_per_publication_tells_none_it_was_kept() -> None:
    """The script's answer names Redis's time, then an offset and an epoch per publication
    in order (the epoch ``b""`` when the answer named it last): an answer with fewer or more
    fails every publication of the call (no false OK), and a well-formed one tells each its
    own offset and epoch, an error in its place alone."""
    from redis.exceptions import ResponseError

    no_link = OneLink(lambda: None)  # type: ignore[arg-type,return-value]
    publisher = Publisher(no_link, RedisKeys("p"), _PUBLISH_MANY, lambda: "v1", lambda: None)
    refused = ResponseError("WRONGTYPE")
    cases: tuple[tuple[list[Any], list[tuple[int, str] | type[Exception]]], ...] = (
        ([b"12.5", 1, b"e1"], [PublishFailed, PublishFailed]),
        ([b"12.5", 1, b"e1", 2, b"", 3, b""], [PublishFailed, PublishFailed]),
        ([b"12.5", 1, b"e1", refused, b""], [(1, "e1"), PublishFailed]),
        ([b"12.5", refused, b"", 4, b"e1"], [PublishFailed, (4, "e1")]),
        ([b"12.5", 7, b"e1", 8, b""], [(7, "e1"), (8, "e1")]),
        ([b"12.5", 7, b"e1", 1, b"e2"], [(7, "e1"), (1, "e2")]),
        ([b"12.5", 7, b"", 8, b""], [PublishFailed, PublishFailed]),  # no epoch named
    )
    for answer, expected in cases:
        told: list[Publication | BaseException] = []
        items = [_Queued(c, {"c": c}, POLICY, None, told.append) for c in ("a", "b")]
        publisher._in_flight = 1
        publisher._settle(Call(items, ""), answer)
        assert len(told) == 2
        for outcome, want in zip(told, expected, strict=True):
            if isinstance(want, tuple):
                assert isinstance(outcome, Publication)
                assert (outcome.offset, outcome.epoch, outcome.time) == (*want, 12.5)
            else:
                assert isinstance(outcome, want)


async def test_ttls_set_once_per_call_and_value_stay_truthful(
    brokers: Brokers, script_calls: Callable[[], Awaitable[ScriptCalls]]
) -> None:
    """A script call sets a key's TTL once for the publications of one channel under one
    policy, but again when the policy differs (the last one's stands) and after the
    history was deleted (a publication keeping none): the keys' TTLs are those the last
    publication of the call gives them."""
    broker = await brokers()
    long, short = POLICY, HistoryPolicy(size=100, ttl=2.0, meta_ttl=3.0)
    none = HistoryPolicy(size=0, ttl=60.0, meta_ttl=600.0)
    admin = aioredis.Redis.from_url(broker.url)
    try:
        for channel, policies in (
            ("same", [long, long, long]),
            ("shorter", [long, long, short]),
            ("longer", [short, long]),
            ("dropped", [long, none, long, long]),
        ):
            batches = await script_calls()
            futures = [broker.publish_soon(channel, i, p) for i, p in enumerate(policies)]
            kept = await asyncio.gather(*futures)
            assert [p.offset for p in kept] == list(range(1, len(policies) + 1))
            count = len(policies)
            await until(lambda b=batches, n=count: sum(b.calls) >= n)  # type: ignore[misc]
            assert batches.calls == [len(policies)], channel  # one call
            last = policies[-1]
            meta_ttl = await admin.ttl(broker.keys.meta(channel))
            history_ttl = await admin.pttl(broker.keys.history(channel))
            assert max(last.meta_ttl, last.ttl) - 2 <= meta_ttl <= max(last.meta_ttl, last.ttl)
            assert last.ttl * 1000 - 2000 <= history_ttl <= last.ttl * 1000, channel
            length = await admin.xlen(broker.keys.history(channel))
            assert length == (2 if channel == "dropped" else len(policies))
    finally:
        await admin.aclose()
