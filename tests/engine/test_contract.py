"""The engine contract: every Broker and PresenceStore implementation must pass these.

Implementations are listed in ``ENGINES``; the Redis engine runs against a
real ``redis-server`` the tests start (``tests/support/redis_server.py``), each
test under its own key prefix. SQLite runs twice: with its default memory window, and with a
window of one publication, so that nearly every read goes to the file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from orbiter.engine.base import Broker, HistoryPolicy, PresenceStore
from orbiter.engine.memory import MemoryBroker, MemoryPresenceStore
from orbiter.engine.redis import RedisBroker, RedisPresenceStore
from orbiter.engine.redis_cluster_mode import ClusterRedisBroker, ClusterRedisPresenceStore
from orbiter.engine.redis_shards import ShardedRedisBroker, ShardedRedisPresenceStore
from orbiter.engine.sqlite import SqliteBroker
from orbiter.model import ClientInfo, PresenceEvent, Publication, StreamPosition

ENGINES: dict[str, Callable[[Path], tuple[Broker, PresenceStore]]] = {
    "memory": lambda _: (MemoryBroker(), MemoryPresenceStore()),
    "sqlite": lambda tmp: (SqliteBroker(tmp / "data.sqlite3"), MemoryPresenceStore()),
    "sqlite-file": lambda tmp: (
        SqliteBroker(tmp / "data.sqlite3", window=1),
        MemoryPresenceStore(),
    ),
}
#: Engines that need a Redis (made by the fixture, with the test's server and prefix):
#: one, channels sharded over two, and a 3-master Redis Cluster
#: (``tests/support/redis_cluster.py``, started once for this module).
REDIS_ENGINES = ("redis", "redis-sharded", "redis-cluster")

POLICY = HistoryPolicy(size=5, ttl=60.0, meta_ttl=600.0)


@pytest.fixture(params=sorted(ENGINES) + list(REDIS_ENGINES))
async def engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Broker, PresenceStore]]:
    if request.param in REDIS_ENGINES:
        url = request.getfixturevalue("redis_server").url
        prefix = request.getfixturevalue("redis_prefix")
        if request.param == "redis-cluster":
            url = request.getfixturevalue("redis_cluster").url
            broker: Broker = ClusterRedisBroker(url, prefix=prefix)
            presence: PresenceStore = ClusterRedisPresenceStore(url, prefix=prefix)
        elif request.param == "redis-sharded":
            urls = [url, request.getfixturevalue("second_redis_server").url]
            broker = ShardedRedisBroker(urls, prefix=prefix)
            presence = ShardedRedisPresenceStore(urls, prefix=prefix)
        else:
            broker = RedisBroker(url, prefix=prefix)
            presence = RedisPresenceStore(url, prefix=prefix)
    else:
        broker, presence = ENGINES[request.param](tmp_path)
    await broker.start()
    yield broker, presence
    await broker.close()
    await presence.close()


async def _received(broker: Broker) -> list[Publication | PresenceEvent]:
    got: list[Publication | PresenceEvent] = []
    broker.set_handlers(got.append, got.append)
    return got


async def test_offsets_grow_by_one_within_an_epoch(engine) -> None:
    broker, _ = engine
    pubs = [await broker.publish("c", i, POLICY) for i in range(3)]
    assert [p.offset for p in pubs] == [1, 2, 3]
    assert len({p.epoch for p in pubs}) == 1
    assert [p.data for p in pubs] == [0, 1, 2]


async def test_only_subscribed_channels_are_delivered_in_order(engine) -> None:
    broker, _ = engine
    got = await _received(broker)
    await broker.subscribe("a")
    await broker.publish("a", 1, POLICY)
    await broker.publish("b", 2, POLICY)
    await broker.publish("a", 3, POLICY)
    for _ in range(50):  # delivery may follow the publisher's answer: wait before leaving
        if len(got) >= 2:
            break
        await asyncio.sleep(0.01)
    await broker.unsubscribe("a")
    await broker.publish("a", 4, POLICY)
    await asyncio.sleep(0.05)
    assert [(p.channel, p.offset, p.data) for p in got if isinstance(p, Publication)] == [
        ("a", 1, 1),
        ("a", 2, 3),
    ]


async def test_presence_events_reach_subscribed_nodes_only(engine) -> None:
    broker, _ = engine
    got = await _received(broker)
    await broker.subscribe("a")
    join = PresenceEvent("a", True, ClientInfo("c1", "ann", {"x": 1}))
    await broker.publish_presence(join)
    await broker.publish_presence(PresenceEvent("b", True, ClientInfo("c2", "bob")))
    for _ in range(50):
        if got:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert got == [join]
    assert (await broker.history("a", None, POLICY)).position.offset == 0


async def test_history_is_bounded_by_size(engine) -> None:
    broker, _ = engine
    for i in range(8):
        await broker.publish("c", i, POLICY)
    page = await broker.history("c", None, POLICY)
    assert [p.data for p in page.publications] == [3, 4, 5, 6, 7]
    assert page.position.offset == 8
    last_two = await broker.history("c", None, POLICY, limit=2)
    assert [p.offset for p in last_two.publications] == [7, 8]
    none = await broker.history("c", None, POLICY, limit=0)
    assert none.publications == []


async def test_recovery_returns_exactly_the_missed_publications(engine) -> None:
    broker, _ = engine
    first = await broker.publish("c", "a", POLICY)
    await broker.publish("c", "b", POLICY)
    await broker.publish("c", "c", POLICY)
    page = await broker.history("c", StreamPosition(first.offset, first.epoch), POLICY)
    assert page.recoverable
    assert [p.data for p in page.publications] == ["b", "c"]
    up_to_date = await broker.history("c", page.position, POLICY)
    assert up_to_date.recoverable
    assert up_to_date.publications == []


async def test_recovery_is_refused_past_trimmed_history(engine) -> None:
    broker, _ = engine
    first = await broker.publish("c", 0, POLICY)
    for i in range(1, 10):
        await broker.publish("c", i, POLICY)
    page = await broker.history("c", StreamPosition(first.offset, first.epoch), POLICY)
    assert not page.recoverable
    # the boundary: the oldest retained offset is 6, so offset 5 can still recover
    edge = await broker.history("c", StreamPosition(5, first.epoch), POLICY)
    assert edge.recoverable
    assert [p.offset for p in edge.publications] == [6, 7, 8, 9, 10]


async def test_recovery_is_refused_for_another_epoch_or_a_future_offset(engine) -> None:
    broker, _ = engine
    pub = await broker.publish("c", 0, POLICY)
    other = await broker.history("c", StreamPosition(0, pub.epoch + "x"), POLICY)
    assert not other.recoverable
    assert other.publications == []
    future = await broker.history("c", StreamPosition(99, pub.epoch), POLICY)
    assert not future.recoverable


async def test_a_new_channel_has_a_position_before_any_publication(engine) -> None:
    broker, _ = engine
    page = await broker.history("fresh", None, POLICY)
    assert page.position.offset == 0
    pub = await broker.publish("fresh", 1, POLICY)
    assert pub.epoch == page.position.epoch
    assert pub.offset == 1
    recovered = await broker.history("fresh", page.position, POLICY)
    assert [p.data for p in recovered.publications] == [1]


async def test_history_size_zero_keeps_offsets_but_no_publications(engine) -> None:
    broker, _ = engine
    policy = HistoryPolicy(size=0, ttl=60.0, meta_ttl=600.0)
    await broker.publish("c", 1, policy)
    pub = await broker.publish("c", 2, policy)
    page = await broker.history("c", None, policy)
    assert page.position.offset == pub.offset == 2
    assert page.publications == []
    gap = await broker.history("c", StreamPosition(1, pub.epoch), policy)
    assert not gap.recoverable


async def test_pages_further_back_with_before(engine) -> None:
    broker, _ = engine
    policy = HistoryPolicy(size=8, ttl=60.0, meta_ttl=600.0)
    for i in range(12):  # offsets 1..12; 5..12 retained
        await broker.publish("c", i + 1, policy)
    newest = await broker.history_before("c", 13, policy, 3)
    assert [p.offset for p in newest.publications] == [10, 11, 12]
    assert newest.position.offset == 12
    back = await broker.history_before("c", 10, policy, 3)
    assert [p.offset for p in back.publications] == [7, 8, 9]
    assert [p.data for p in back.publications] == [7, 8, 9]
    edge = await broker.history_before("c", 7, policy, 3)
    assert [p.offset for p in edge.publications] == [5, 6]  # 4 and older are trimmed
    assert (await broker.history_before("c", 5, policy, 3)).publications == []
    beyond = await broker.history_before("c", 100, policy, 2)
    assert [p.offset for p in beyond.publications] == [11, 12]
    assert (await broker.history_before("c", 13, policy, 0)).publications == []
    never = await broker.history_before("never", 10, policy, 3)
    assert never.publications == []
    assert never.position.offset == 0


async def test_presence_tracks_clients_per_channel(engine) -> None:
    _, presence = engine
    assert await presence.add("a", ClientInfo("c1", "ann"))
    assert not await presence.add("a", ClientInfo("c2", None))
    assert await presence.add("b", ClientInfo("c1", "ann"))
    assert await presence.channels() == {"a": 2, "b": 1}
    assert sorted(await presence.clients("a"), key=lambda c: c.client) == [
        ClientInfo("c1", "ann"),
        ClientInfo("c2", None),
    ]
    assert await presence.remove("a", "c1") == ClientInfo("c1", "ann")
    assert await presence.remove("b", "c1") == ClientInfo("c1", "ann")
    assert await presence.remove("b", "nobody") is None
    assert await presence.remove("a", "c2") is None  # anonymous: no leave
    assert await presence.channels() == {}
    assert await presence.clients("b") == []


async def test_a_user_with_two_clients_joins_once_and_leaves_once(engine) -> None:
    _, presence = engine
    assert await presence.add("a", ClientInfo("tab1", "ann", {"v": 1}))
    assert not await presence.add("a", ClientInfo("tab2", "ann", {"v": 2}))
    assert not await presence.add("a", ClientInfo("tab2", "ann", {"v": 2}))  # idempotent
    assert await presence.channels() == {"a": 2}
    assert await presence.remove("a", "tab1") is None
    assert await presence.remove("a", "tab2") == ClientInfo("tab2", "ann", {"v": 2})


async def test_subscribed_names_the_channels_with_subscribers(engine) -> None:
    broker, _ = engine
    await broker.subscribe("here")
    assert await broker.subscribed(["here", "nowhere"]) == {"here"}
    await broker.unsubscribe("here")
    assert await broker.subscribed(["here", "nowhere"]) == set()
    assert await broker.subscribed([]) == set()


async def test_a_survey_on_a_node_alone_has_no_other_answer(engine) -> None:
    broker, _ = engine
    broker.set_answerer("count", lambda argument: [argument, "here"])
    assert broker.answer("count", 7) == [7, "here"]  # what another node would be told
    assert broker.answer("unknown", None) is None
    survey = await broker.survey("count", 7)
    assert survey.nodes == 1
    assert survey.answers == []
