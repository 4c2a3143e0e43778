"""The Redis engine on a real 3-master Redis Cluster when a master goes down and comes back
(``tests/support/redis_cluster.py``, a cluster of this module's own): publications to its
channels fail (never a false OK), the other masters' channels go on, and once it is back
its channels are published and delivered again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from orbiter.engine.base import EngineUnavailable, HistoryPolicy, PublishFailed
from orbiter.engine.redis_cluster_mode import (
    ClusterKeys,
    ClusterRedisBroker,
    ClusterRedisPresenceStore,
)
from orbiter.engine.redis_publishing import PUBLISH_MANY_MAX
from orbiter.model import ClientInfo, Publication
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_monitor import ScriptCalls
from tests.support.waiting import until

POLICY = HistoryPolicy(size=10, ttl=60.0, meta_ttl=600.0)


@pytest.fixture
async def brokers(
    redis_cluster: RedisCluster, redis_prefix: str
) -> AsyncIterator[tuple[ClusterRedisBroker, ClusterRedisBroker]]:
    pair = tuple(
        ClusterRedisBroker(redis_cluster.url, prefix=redis_prefix, backoff=(0.05, 0.2))
        for _ in range(2)
    )
    for broker in pair:
        await broker.start()
    yield pair[0], pair[1]
    for broker in pair:
        await broker.close()


def _channel_on(cluster: RedisCluster, keys: ClusterKeys, port: int) -> str:
    """A channel whose slot is on the master on ``port``."""
    return next(f"c{n}" for n in range(1000) if cluster.port_of(keys.meta(f"c{n}")) == port)


async def test_a_master_down_fails_its_channels_only_and_they_come_back(
    redis_cluster: RedisCluster, redis_prefix: str, brokers: tuple[ClusterRedisBroker, ...]
) -> None:
    publisher, subscriber = brokers
    keys = ClusterKeys(redis_prefix)
    by_port: dict[int, str] = {}
    for number in range(200):
        by_port.setdefault(redis_cluster.port_of(keys.meta(f"c{number}")), f"c{number}")
        if len(by_port) == 3:
            break
    down_port, up_port = redis_cluster.ports[1], redis_cluster.ports[2]  # not the URL's node
    lost, kept = by_port[down_port], by_port[up_port]
    got: list[Publication] = []
    subscriber.set_handlers(got.append, lambda _: None)
    for channel in (lost, kept):
        await subscriber.subscribe(channel)
        await publisher.publish(channel, "before", POLICY)
    await until(lambda: len(got) == 2)

    redis_cluster.stop_node(down_port)
    with pytest.raises(PublishFailed):
        await publisher.publish(lost, "during", POLICY)
    await publisher.publish(kept, "during", POLICY)
    await until(lambda: [(p.channel, p.data) for p in got][2:] == [(kept, "during")])

    redis_cluster.start_node(down_port)  # its data lost: the channel starts a new epoch
    for _ in range(200):
        try:
            back = await publisher.publish(lost, "back", POLICY)
            break
        except PublishFailed:
            await asyncio.sleep(0.05)
    else:
        raise AssertionError("the master did not come back")
    assert back.offset == 1
    await until(lambda: (lost, "back") in [(p.channel, p.data) for p in got])
    assert [(p.channel, p.data) for p in got if p.data != "before"] == [
        (kept, "during"),
        (lost, "back"),
    ]
    assert publisher.failures >= 1


async def test_a_channel_follows_its_slot_to_another_master(
    redis_cluster: RedisCluster, redis_prefix: str, brokers: tuple[ClusterRedisBroker, ...]
) -> None:
    publisher, subscriber = brokers
    keys = ClusterKeys(redis_prefix)
    channel = "moving"
    slot = redis_cluster.slot_of(keys.meta(channel))
    source = redis_cluster.port_of_slot(slot)
    target = next(port for port in redis_cluster.ports if port != source)
    got: list[Publication] = []
    subscriber.set_handlers(got.append, lambda _: None)
    await subscriber.subscribe(channel)
    await publisher.publish(channel, 1, POLICY)
    await until(lambda: len(got) == 1)

    redis_cluster.move_slot(slot, target)  # keys migrated; the old master drops its
    await asyncio.sleep(0.2)  # subscribers (SUNSUBSCRIBE), the publisher's map is stale
    for data in range(2, 6):
        await publisher.publish(channel, data, POLICY)  # MOVED, then the new master
    await until(lambda: len(got) == 5)
    assert [(p.offset, p.data) for p in got] == [(n, n) for n in range(1, 6)]
    assert redis_cluster.port_of(keys.pubsub(channel)) == target
    assert await subscriber.subscribed([channel]) == {channel}  # SHARDNUMSUB on the new one


async def test_reads_of_a_slot_no_master_holds_are_engine_unavailable_and_others_go_on(
    redis_cluster: RedisCluster, redis_prefix: str, brokers: tuple[ClusterRedisBroker, ...]
) -> None:
    broker = brokers[0]
    keys = ClusterKeys(redis_prefix)
    down_port, up_port = redis_cluster.ports[1], redis_cluster.ports[2]  # not the URL's node
    lost, kept = (_channel_on(redis_cluster, keys, port) for port in (down_port, up_port))
    presence = ClusterRedisPresenceStore(redis_cluster.url, prefix=redis_prefix)
    for channel in (lost, kept):
        await broker.publish(channel, "before", POLICY)
        await presence.add(channel, ClientInfo(f"on-{channel}", "ann"))
    redis_cluster.stop_node(down_port)
    redis_cluster.drop_slots(down_port)  # no master holds its slots: not even a dead one
    try:
        for read in (
            lambda: broker.history(lost, None, POLICY),
            lambda: broker.history_before(lost, 2, POLICY, 10),
            lambda: presence.clients(lost),
        ):
            errors: list[str] = []
            for _ in range(3):  # a connection error first, then the slot is not covered
                with pytest.raises(EngineUnavailable) as caught:
                    await read()
                errors.append(str(caught.value))
            assert "not covered" in errors[-1], errors
        with pytest.raises(PublishFailed):
            await broker.publish(lost, "during", POLICY)
        page = await broker.history(kept, None, POLICY)  # the other masters go on
        assert [p.data for p in page.publications] == ["before"]
        assert (await broker.publish(kept, "during", POLICY)).offset == 2
        assert await presence.clients(kept) == [ClientInfo(f"on-{kept}", "ann")]
    finally:
        redis_cluster.start_node(down_port)  # claims its slots again (its data lost)
        await presence.close()
    for _ in range(200):
        try:
            back = await broker.publish(lost, "back", POLICY)
            break
        except PublishFailed:
            await asyncio.sleep(0.05)
    else:
        raise AssertionError("the master did not come back")
    assert back.offset == 1
    assert [p.data for p in (await broker.history(lost, None, POLICY)).publications] == ["back"]


async def test_a_publish_caught_mid_migration_follows_ask_once(
    redis_cluster: RedisCluster, redis_prefix: str, brokers: tuple[ClusterRedisBroker, ...]
) -> None:
    publisher, subscriber = brokers
    keys = ClusterKeys(redis_prefix)
    channel = "migrating"
    slot = redis_cluster.slot_of(keys.meta(channel))
    source = redis_cluster.port_of_slot(slot)
    target = next(port for port in redis_cluster.ports if port != source)
    got: list[Publication] = []
    subscriber.set_handlers(got.append, lambda _: None)
    await subscriber.subscribe(channel)
    await publisher.publish(channel, 1, POLICY)
    await until(lambda: len(got) == 1)

    moved_from = redis_cluster.begin_move(slot, target)  # keys on the target: ASK
    try:
        during = await publisher.publish(channel, 2, POLICY)  # ASKING + script on the target
        assert during.offset == 2
        history = await redis_cluster_history(redis_cluster, target, keys, channel)
        assert history == 2  # on the importing master, once
    finally:
        redis_cluster.finish_move(slot, target, moved_from)
    await publisher.publish(channel, 3, POLICY)
    await until(lambda: len(got) == 3)  # 2 was published on the target: caught up
    await asyncio.sleep(0.2)
    assert [(p.offset, p.data) for p in got] == [(n, n) for n in range(1, 4)]
    page = await publisher.history(channel, None, POLICY)
    assert [(p.offset, p.data) for p in page.publications] == [(n, n) for n in range(1, 4)]


async def redis_cluster_history(
    cluster: RedisCluster, port: int, keys: ClusterKeys, channel: str
) -> int:
    """The number of entries of ``channel``'s history on the master on ``port`` (importing
    its slot: asked after ``ASKING``)."""
    admin = aioredis.Redis(host="127.0.0.1", port=port)
    try:
        pipe = admin.pipeline(transaction=False)
        pipe.execute_command("ASKING")
        pipe.xlen(keys.history(channel))
        _, length = await pipe.execute()
        return int(length)
    finally:
        await admin.aclose()


async def test_presence_refreshed_per_master_outlives_its_ttl_on_every_master(
    redis_cluster: RedisCluster, redis_prefix: str
) -> None:
    ttl = 0.6
    store, reader = (
        ClusterRedisPresenceStore(redis_cluster.url, prefix=redis_prefix, ttl=ttl) for _ in range(2)
    )
    probe = ClusterRedisPresenceStore(redis_cluster.url, prefix=redis_prefix, ttl=ttl)
    keys = ClusterKeys(redis_prefix)
    channels = [_channel_on(redis_cluster, keys, port) for port in redis_cluster.ports]
    channels += [f"{c}x" for c in channels]  # more than one channel on some masters
    try:
        for channel in channels:
            for n in range(2):
                assert await store.add(channel, ClientInfo(f"{channel}-{n}", f"u{n}"))
        assert await probe.add("gone", ClientInfo("g", "ann"))
        await probe.close()  # not refreshed: expires, as the others would without refresh
        await asyncio.sleep(ttl * 2.5)
        for channel in channels:
            names = sorted(c.client for c in await reader.clients(channel))
            assert names == [f"{channel}-0", f"{channel}-1"], channel
        assert await reader.clients("gone") == []
        assert await reader.channels() == {channel: 2 for channel in channels}
        # one pipeline per master: a plain client of each, none of another
        assert set(store._node_clients) == {f"127.0.0.1:{port}" for port in redis_cluster.ports}
    finally:
        for each in (store, reader):
            await each.close()


async def test_a_presence_refresh_with_a_master_down_renews_the_others_and_fails(
    redis_prefix: str,
) -> None:
    # A cluster of its own: after the module's earlier tests moved slots and restarted a
    # master, the masters' views of the slot map could still disagree (gossip), and a
    # channel this test placed on a live master was routed to the stopped one.
    redis_cluster = RedisCluster()
    try:
        await _refresh_with_a_master_down(redis_cluster, redis_prefix)
    finally:
        redis_cluster.close()


async def _refresh_with_a_master_down(redis_cluster: RedisCluster, redis_prefix: str) -> None:
    ttl = 1.5
    store = ClusterRedisPresenceStore(redis_cluster.url, prefix=redis_prefix, ttl=ttl)
    keys = ClusterKeys(redis_prefix)
    down_port, up_port = redis_cluster.ports[1], redis_cluster.ports[2]
    lost, kept = (_channel_on(redis_cluster, keys, port) for port in (down_port, up_port))
    try:
        for channel in (lost, kept):
            await store.add(channel, ClientInfo(f"on-{channel}", "ann"))
        assert store._refresher is not None
        store._refresher.cancel()  # refreshed by hand below, not on its timer
        redis_cluster.stop_node(down_port)
        for _ in range(3):  # past the TTL, refreshed within each third of it
            await asyncio.sleep(ttl / 2)
            with pytest.raises(RedisConnectionError):
                await store.refresh()  # the lost master's channel fails, once all were tried
        # The kept channel's entry outlived the TTL (refreshed on its live master).
        assert await store.clients(kept) == [ClientInfo(f"on-{kept}", "ann")]
        # A fresh client's first read: redis-py would send it to a random master before
        # reading the slot map (1 in 3 to the stopped one); 12 fresh clients, each asked once.
        for _ in range(12):
            reader = ClusterRedisPresenceStore(redis_cluster.url, prefix=redis_prefix, ttl=ttl)
            try:
                assert await reader.clients(kept) == [ClientInfo(f"on-{kept}", "ann")]
            finally:
                await reader.close()
    finally:
        redis_cluster.start_node(down_port)
        await store.close()


async def test_a_history_read_whose_script_a_master_lost_runs_with_another_master_down(
    redis_prefix: str,
) -> None:
    # A cluster of its own: a master stopped and started again is taken for failed by the
    # others for a while (cluster_state:fail), and the module's next test met CLUSTERDOWN.
    redis_cluster = RedisCluster()
    broker = ClusterRedisBroker(redis_cluster.url, prefix=redis_prefix, backoff=(0.05, 0.2))
    try:
        await broker.start()
        await _history_read_with_a_master_down(redis_cluster, redis_prefix, broker)
    finally:
        await broker.close()
        redis_cluster.close()


async def _history_read_with_a_master_down(
    redis_cluster: RedisCluster, redis_prefix: str, broker: ClusterRedisBroker
) -> None:
    keys = ClusterKeys(redis_prefix)
    # Neither the URL's node nor the master of the node list (<prefix>:nodes), which a
    # node joins as it starts: with that master down no node can join (there is no
    # replica to take over here), whichever master the test's prefix put it on.
    listed = redis_cluster.port_of(f"{redis_prefix}:nodes")
    down_port = next(p for p in redis_cluster.ports[1:] if p != listed)
    up_port = next(p for p in redis_cluster.ports[1:] if p != down_port)
    kept = _channel_on(redis_cluster, keys, up_port)
    await broker.publish(kept, "before", POLICY)
    redis_cluster.stop_node(down_port)
    try:
        admin = aioredis.Redis(host="127.0.0.1", port=up_port)
        try:
            await admin.script_flush()  # NOSCRIPT on the kept master (as after its restart)
        finally:
            await admin.aclose()
        # loaded on that master alone: SCRIPT LOAD on every master fails while one is down
        page = await broker.history(kept, None, POLICY)
        assert [p.data for p in page.publications] == ["before"]
        # a node started while a master is down loads its scripts on the others
        late = ClusterRedisBroker(redis_cluster.url, prefix=redis_prefix, backoff=(0.05, 0.2))
        await late.start()
        try:
            page = await late.history(kept, None, POLICY)
            assert [p.data for p in page.publications] == ["before"]
            assert (await late.publish(kept, "during", POLICY)).offset == 2
        finally:
            await late.close()
    finally:
        redis_cluster.start_node(down_port)


def _after_errors(cluster: RedisCluster, error: str, count: int) -> asyncio.Task[bool]:
    """A task that waits (at most 10 s, in a thread) until the masters gave ``count`` more
    ``error`` answers than now; whether they did."""
    target = _errors(cluster, error) + count
    return asyncio.create_task(asyncio.to_thread(_wait_for_errors, cluster, error, target))


def _errors(cluster: RedisCluster, error: str) -> int:
    return sum(cluster.error_count(port, error) for port in cluster.ports)


def _wait_for_errors(cluster: RedisCluster, error: str, target: int) -> bool:
    for _ in range(1000):
        if _errors(cluster, error) >= target:
            return True
        time.sleep(0.01)
    return False


async def test_a_slot_not_served_is_asked_again_then_fails_with_a_clear_error(
    redis_cluster: RedisCluster, redis_prefix: str, brokers: tuple[ClusterRedisBroker, ...]
) -> None:
    broker = brokers[0]
    keys = ClusterKeys(redis_prefix)
    port = redis_cluster.ports[2]
    channel = _channel_on(redis_cluster, keys, port)
    slot = redis_cluster.slot_of(keys.meta(channel))
    await broker.publish(channel, "before", POLICY)
    redis_cluster.unassign_slot(slot)  # CLUSTERDOWN Hash slot not served
    try:
        # served again once its master answered CLUSTERDOWN: the read is sent again
        served = _after_errors(redis_cluster, "CLUSTERDOWN", 1)
        served.add_done_callback(lambda _: redis_cluster.assign_slot(slot, port))
        page = await broker.history(channel, None, POLICY)
        assert await served
        assert [p.data for p in page.publications] == ["before"]

        redis_cluster.unassign_slot(slot)  # for good: a bounded wait, then a clear error
        started = asyncio.get_running_loop().time()
        with pytest.raises(EngineUnavailable) as caught:
            await broker.history(channel, None, POLICY)
        assert asyncio.get_running_loop().time() - started < 5
        assert "CLUSTERDOWN" in str(caught.value) or "not covered" in str(caught.value)
        assert "4 times" in str(caught.value) or "4 attempts" in str(caught.value)
    finally:
        redis_cluster.assign_slot(slot, port)
    page = await broker.history(channel, None, POLICY)
    assert [p.data for p in page.publications] == ["before"]


async def test_a_read_answered_tryagain_mid_resharding_is_asked_again(
    redis_cluster: RedisCluster, redis_prefix: str, brokers: tuple[ClusterRedisBroker, ...]
) -> None:
    broker = brokers[0]
    keys = ClusterKeys(redis_prefix)
    source, target = redis_cluster.ports[2], redis_cluster.ports[0]
    channel = _channel_on(redis_cluster, keys, source)
    slot = redis_cluster.slot_of(keys.meta(channel))
    await broker.publish(channel, "before", POLICY)
    history = keys.history(channel)
    # half migrated: the history on the target, the rest on the source (TRYAGAIN)
    redis_cluster.begin_move(slot, target, only=lambda key: key == history)
    try:
        # redis-py asks 16 times (about 0.4 s); the move ends only after more than that
        done = _after_errors(redis_cluster, "TRYAGAIN", 20)
        done.add_done_callback(lambda _: redis_cluster.finish_move(slot, target, source))
        page = await broker.history(channel, None, POLICY)
        assert await done
        assert [p.data for p in page.publications] == ["before"]
    finally:
        redis_cluster.finish_move(slot, target, source)
    assert redis_cluster.port_of(keys.meta(channel)) == target


async def test_a_read_whose_master_died_goes_to_the_master_its_slot_went_to(
    redis_prefix: str,
) -> None:
    # A cluster of its own: a slot handed over while its master is down stays disputed
    # once that master is back.
    redis_cluster = RedisCluster()
    broker = ClusterRedisBroker(redis_cluster.url, prefix=redis_prefix, backoff=(0.05, 0.2))
    try:
        await broker.start()
        keys = ClusterKeys(redis_prefix)
        down_port, up_port = redis_cluster.ports[1], redis_cluster.ports[2]
        lost = _channel_on(redis_cluster, keys, down_port)
        other = next(
            f"o{n}"
            for n in range(1000)
            if redis_cluster.port_of(keys.meta(f"o{n}")) == down_port
            and redis_cluster.slot_of(keys.meta(f"o{n}")) != redis_cluster.slot_of(keys.meta(lost))
        )
        for channel in (lost, other):
            await broker.publish(channel, "before", POLICY)
        redis_cluster.stop_node(down_port)
        # as a failover would: the slot of `lost` (its data lost) now on a live master,
        # while the broker's slot map still names the stopped one
        redis_cluster.assign_slot(redis_cluster.slot_of(keys.meta(lost)), up_port)
        page = await broker.history(lost, None, POLICY)  # refused, map read, sent there
        assert page.publications == []
        # a slot still on the stopped master fails at once, without waiting for the
        # socket's timeout (10 s): 20-40 ms here when quiet; 2.6 s was seen on a machine
        # loaded three times over, so the bound is 5 s
        started = asyncio.get_running_loop().time()
        with pytest.raises(EngineUnavailable, match="connecting"):
            await broker.history(other, None, POLICY)
        assert asyncio.get_running_loop().time() - started < 5
    finally:
        await broker.close()
        redis_cluster.close()


async def test_a_publish_answered_tryagain_mid_resharding_is_kept_once_when_it_ends(
    redis_cluster: RedisCluster, redis_prefix: str, brokers: tuple[ClusterRedisBroker, ...]
) -> None:
    publisher, subscriber = brokers
    keys = ClusterKeys(redis_prefix)
    source, target = redis_cluster.ports[2], redis_cluster.ports[0]
    channel = next(
        f"t{n}" for n in range(1000) if redis_cluster.port_of(keys.meta(f"t{n}")) == source
    )
    slot = redis_cluster.slot_of(keys.meta(channel))
    got: list[Publication] = []
    subscriber.set_handlers(got.append, lambda _: None)
    await subscriber.subscribe(channel)
    await publisher.publish(channel, 1, POLICY)
    await until(lambda: len(got) == 1)
    history = keys.history(channel)
    redis_cluster.begin_move(slot, target, only=lambda key: key == history)  # TRYAGAIN
    try:
        # the move ends after the third TRYAGAIN: the publish waits and is sent again
        done = _after_errors(redis_cluster, "TRYAGAIN", 3)
        done.add_done_callback(lambda _: redis_cluster.finish_move(slot, target, source))
        kept = await publisher.publish(channel, 2, POLICY)
        assert await done
    finally:
        redis_cluster.finish_move(slot, target, source)
    assert kept.offset == 2
    page = await publisher.history(channel, None, POLICY)
    assert [(p.offset, p.data) for p in page.publications] == [(1, 1), (2, 2)]  # once
    await until(lambda: len(got) == 2)  # caught up once its channel follows the slot
    assert [(p.offset, p.data) for p in got] == [(1, 1), (2, 2)]


async def test_a_pipeline_over_every_master_is_one_script_call_per_slot_in_queue_order(
    redis_cluster: RedisCluster, redis_prefix: str, brokers: tuple[ClusterRedisBroker, ...]
) -> None:
    """Publications queued together on channels of every master go as one script call per
    slot (a slot's keys only: no CROSSSLOT), on one link per master; a slot with more than
    PUBLISH_MANY_MAX makes calls one after another; each channel's publications are
    answered, delivered and kept in the order queued."""
    publisher, subscriber = brokers
    keys = ClusterKeys(redis_prefix)
    channels = [_channel_on(redis_cluster, keys, port) for port in redis_cluster.ports]
    channels.append(  # another slot of the first one's master
        next(
            f"d{n}"
            for n in range(1000)
            if redis_cluster.port_of(keys.meta(f"d{n}")) == redis_cluster.ports[0]
            and redis_cluster.slot_of(keys.meta(f"d{n}"))
            != redis_cluster.slot_of(keys.meta(channels[0]))
        )
    )
    got: list[Publication] = []
    subscriber.set_handlers(got.append, lambda _: None)
    for channel in channels:
        await subscriber.subscribe(channel)
    masters = [ScriptCalls(port, redis_prefix) for port in redis_cluster.ports]
    for master in masters:
        await master.start()
    try:
        busy = channels[0]  # past one call's worth
        queued = [(busy, i) for i in range(PUBLISH_MANY_MAX + 20)]
        queued += [(channels[i % 4], i) for i in range(1000, 1040)]
        futures = [publisher.publish_soon(channel, data, POLICY) for channel, data in queued]
        pubs = await asyncio.wait_for(asyncio.gather(*futures), 10)
        await until(lambda: sum(sum(m.calls) for m in masters) >= len(queued))
        calls = [each for master in masters for each in master.calls]
    finally:
        for master in masters:
            await master.close()
    assert sorted(calls) == [10, 10, 10, 30, PUBLISH_MANY_MAX]  # 148 + 10 on busy's slot
    assert set(publisher._publisher._links) == {f"127.0.0.1:{p}" for p in redis_cluster.ports}
    for channel in channels:
        datas = [data for c, data in queued if c == channel]
        assert [(p.offset, p.data) for p in pubs if p.channel == channel] == list(
            enumerate(datas, 1)
        )
    await until(lambda: len(got) == len(queued))
    for channel in channels:
        datas = [data for c, data in queued if c == channel]
        assert [p.data for p in got if p.channel == channel] == datas
        page = await publisher.history(channel, None, POLICY)
        assert [p.data for p in page.publications] == datas[-POLICY.size :]
