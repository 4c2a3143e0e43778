"""``Broker.publish_then`` on the Redis engine (single and cluster modes): each queued
publication's callback is told in the I/O callback that parsed Redis's answer to its script
call, in the order queued, with no loop iteration between (issue 16: the fast HTTP publish
path answers from it); a refused publication fails alone; a connection lost before the
answer tells every waiting publication :class:`PublishFailed`, never an OK.

"In the I/O callback" is checked against a future of the same script call, queued first:
its done-callbacks are scheduled (``call_soon``) when the answer is parsed, so a callback
told in that same I/O callback sees the future done and its done-callback not run yet.
Against a real ``redis-server`` (``tests/support/redis_server.py``) or Redis Cluster.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from orbiter.engine.base import Broker, HistoryPolicy, PublishFailed
from orbiter.engine.redis import RedisBroker
from orbiter.engine.redis_cluster_mode import ClusterRedisBroker
from orbiter.engine.redis_shards import ShardedRedisBroker, shard_of
from orbiter.model import Publication
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_relay import RedisRelay
from tests.support.redis_server import RedisServer

POLICY = HistoryPolicy(size=100, ttl=60.0, meta_ttl=600.0)

#: What a callback was told, and whether the script call's future (queued before it) was
#: done and its done-callback had run by then.
Told = tuple[int, Publication | BaseException, bool, bool]


class Witness:
    """A future queued first in a script call, and the callbacks of the publications queued
    after it in the same call: what each was told and when (see the module's docstring)."""

    def __init__(self, broker: Broker, channel: str) -> None:
        future = broker.publish_soon(channel, "witness", POLICY)
        assert future is not None
        self.future = future
        self.callback_ran = False
        self.future.add_done_callback(self._ran)
        self.told: list[Told] = []
        self.all_told = asyncio.Event()
        self.expected = 0

    def _ran(self, _: object) -> None:
        self.callback_ran = True

    def done(self, index: int) -> Callable[[Publication | BaseException], None]:
        self.expected += 1

        def told(outcome: Publication | BaseException) -> None:
            self.told.append((index, outcome, self.future.done(), self.callback_ran))
            if len(self.told) == self.expected:
                self.all_told.set()

        return told

    async def wait(self) -> None:
        await asyncio.wait_for(self.all_told.wait(), 10)
        await asyncio.sleep(0.05)  # nothing told twice


@pytest.fixture
async def broker(redis_server: RedisServer, redis_prefix: str) -> AsyncIterator[RedisBroker]:
    made = RedisBroker(redis_server.url, prefix=redis_prefix)
    await made.start()
    yield made
    await made.close()


def _queue(broker: Broker, witness: Witness, channels: list[str]) -> None:
    for index, channel in enumerate(channels):
        assert broker.publish_then(channel, index, POLICY, None, witness.done(index))


async def test_answers_are_told_in_the_io_callback_that_read_them_in_queue_order(
    broker: RedisBroker,
) -> None:
    channels = ["a", "b", "a", "a", "b"]
    await broker.publish("a", "before", POLICY)  # the link is made; "a" is at offset 1
    witness = Witness(broker, "w")
    _queue(broker, witness, channels)
    await witness.wait()
    assert [index for index, *_ in witness.told] == list(range(len(channels)))
    for index, outcome, future_done, callback_ran in witness.told:
        assert isinstance(outcome, Publication), outcome
        assert (outcome.channel, outcome.data) == (channels[index], index)
        assert future_done
        assert not callback_ran, "told an iteration after the answer"
    offsets = [(o.channel, o.offset) for _, o, *_ in witness.told if isinstance(o, Publication)]
    assert offsets == [("a", 2), ("b", 1), ("a", 3), ("a", 4), ("b", 2)]
    await broker.close()
    with pytest.raises(PublishFailed):
        broker.publish_then("a", "late", POLICY, None, witness.done(99))


async def test_a_refused_publication_fails_alone_and_in_place(broker: RedisBroker) -> None:
    """One publication of the call is refused (its meta key is not a hash: WRONGTYPE): it
    alone is told PublishFailed, in its place; the others are kept and told so."""
    admin = aioredis.Redis.from_url(broker.url)
    await admin.set(broker.keys.meta("bad"), "not a hash")
    await admin.aclose()
    channels = ["a", "bad", "a", "b"]
    await broker.publish("w", "before", POLICY)
    witness = Witness(broker, "w")
    _queue(broker, witness, channels)
    await witness.wait()
    assert [index for index, *_ in witness.told] == [0, 1, 2, 3]
    outcomes = [outcome for _, outcome, *_ in witness.told]
    assert isinstance(outcomes[1], PublishFailed)
    assert "WRONGTYPE" in str(outcomes[1])
    kept = [(o.channel, o.offset) for o in outcomes if isinstance(o, Publication)]
    assert kept == [("a", 1), ("a", 2), ("b", 1)]
    assert all(done and not ran for _, _, done, ran in witness.told)


async def test_a_connection_lost_before_the_answer_tells_every_waiting_one_it_failed(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    """Redis reads the script call and the connection is cut before its answer comes back
    (a relay cuts it right after the call): every publication of it, and the future
    beside them, are told PublishFailed (as the future path says), once, never an OK."""
    relay = RedisRelay(redis_server.port)
    await relay.start()
    broker = RedisBroker(relay.url, prefix=redis_prefix, backoff=(0.05, 0.2))
    try:
        await broker.start()
        await broker.publish("w", "before", POLICY)
        cut = relay.cut_after(lambda words: words[0].upper() in (b"EVALSHA", b"EVAL"))
        witness = Witness(broker, "w")
        _queue(broker, witness, ["a", "b", "a"])
        await witness.wait()
        assert cut.is_set()
        assert [index for index, *_ in witness.told] == [0, 1, 2]
        for _, outcome, _, _ in witness.told:
            assert isinstance(outcome, PublishFailed), outcome
            assert "could not reach Redis" in str(outcome)
        with pytest.raises(PublishFailed, match="could not reach Redis"):
            await witness.future
        relay.restore()
        told: list[Publication | BaseException] = []
        broker.publish_then("a", "after", POLICY, None, told.append)
        for _ in range(500):
            if told:
                break
            await asyncio.sleep(0.01)
        assert len(told) == 1
        assert isinstance(told[0], Publication), told
    finally:
        await broker.close()
        await relay.close()


async def test_a_cluster_tells_each_slots_answers_in_the_io_callback_in_queue_order(
    redis_cluster: RedisCluster, redis_prefix: str
) -> None:
    """On a Redis Cluster (one script call per slot, over several masters): each callback
    is told in the I/O callback that read its call's answer, each channel's in the order
    queued; the witness's channel shares the first call's slot."""
    broker = ClusterRedisBroker(redis_cluster.url, prefix=redis_prefix, backoff=(0.05, 0.2))
    await broker.start()
    try:
        channels = [f"c{n % 6}" for n in range(30)]
        for channel in set(channels):
            await broker.publish(channel, "before", POLICY)  # every master's link is made
        witness = Witness(broker, "c0")
        _queue(broker, witness, channels)
        await witness.wait()
        by_channel: dict[str, list[tuple[int, int]]] = {}
        for index, outcome, done, ran in witness.told:
            assert isinstance(outcome, Publication), outcome
            assert outcome.data == index
            by_channel.setdefault(outcome.channel, []).append((index, outcome.offset))
            if outcome.channel == "c0":
                assert done
                assert not ran, "told an iteration after the answer"
        assert len(witness.told) == len(channels)
        for channel, told in by_channel.items():
            first = 3 if channel == "c0" else 2  # (the witness was kept first on c0)
            assert [offset for _, offset in told] == list(range(first, first + 5))
            assert [index for index, _ in told] == sorted(index for index, _ in told)
    finally:
        await broker.close()


async def test_sharded_redis_tells_from_each_shards_io_callback(
    redis_server: RedisServer, second_redis_server: RedisServer, redis_prefix: str
) -> None:
    """Channels sharded over two Redis servers: each publication is told by its shard, in
    the I/O callback that read the answer."""
    broker = ShardedRedisBroker([redis_server.url, second_redis_server.url], prefix=redis_prefix)
    await broker.start()
    try:
        names = [f"s{n}" for n in range(50)]
        first = next(name for name in names if shard_of(name, 2) == 0)
        second = next(name for name in names if shard_of(name, 2) == 1)
        for channel in (first, second):
            await broker.publish(channel, "before", POLICY)
        witness = Witness(broker, first)
        _queue(broker, witness, [first, second, first])
        await witness.wait()
        assert [
            (i, o.channel, o.offset) for i, o, *_ in witness.told if isinstance(o, Publication)
        ] in (
            [(0, first, 3), (2, first, 4), (1, second, 2)],
            [(1, second, 2), (0, first, 3), (2, first, 4)],
        )
        for _, outcome, done, ran in witness.told:
            if outcome.channel == first:  # type: ignore[union-attr]
                assert done
                assert not ran, "told an iteration after the answer"
    finally:
        await broker.close()


async def test_a_callback_that_raises_is_logged_and_the_next_ones_are_still_told(
    broker: RedisBroker, caplog: pytest.LogCaptureFixture
) -> None:
    told: list[Publication | BaseException] = []

    def raises(outcome: Publication | BaseException) -> None:
        raise RuntimeError("a route's bug")

    broker.publish_then("a", 0, POLICY, None, raises)
    broker.publish_then("a", 1, POLICY, None, told.append)
    future = broker.publish_soon("a", 2, POLICY)
    assert future is not None
    pub = await asyncio.wait_for(future, 10)
    assert pub.offset == 3
    assert [o.offset for o in told if isinstance(o, Publication)] == [2]
    assert "answering a publication of 'a' failed" in caplog.text
