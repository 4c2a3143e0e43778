"""PubSub's passes: a large channel is written to a step of subscribers per loop iteration.

Publications that arrive while a pass is under way join the batches of the
subscribers it has not reached yet; those it has passed get them in the
next pass. Every subscriber still gets every publication once, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orbiter.model import ClientInfo, PresenceEvent
from orbiter.services import pubsub as pubsub_module
from orbiter.services.shared_batch import SharedBatch
from tests.services.test_pubsub_batches import Batched, make


@pytest.fixture
def step_of_3() -> Iterator[None]:
    saved = pubsub_module.STEP
    pubsub_module.STEP = 3
    yield
    pubsub_module.STEP = saved


async def _subscribed(count: int) -> tuple[pubsub_module.PubSub, list[Batched]]:
    pubsub, _ = make()
    subs = [Batched() for _ in range(count)]
    for sub in subs:
        await pubsub.subscribe(sub, "ch")
    return pubsub, subs


@pytest.mark.usefixtures("step_of_3")
async def test_a_pass_writes_one_step_of_subscribers_per_iteration() -> None:
    pubsub, subs = await _subscribed(7)
    await pubsub.publish("ch", "a")
    await asyncio.sleep(0)
    assert [s.got for s in subs] == [["a"]] * 3 + [[]] * 4
    await asyncio.sleep(0)
    assert [s.got for s in subs] == [["a"]] * 6 + [[]]
    await asyncio.sleep(0)
    assert [s.got for s in subs] == [["a"]] * 7
    assert len({id(s.batches[0]) for s in subs}) == 1  # one batch for all


@pytest.mark.usefixtures("step_of_3")
async def test_what_comes_mid_pass_joins_the_batches_of_those_not_reached_yet() -> None:
    pubsub, subs = await _subscribed(7)
    await pubsub.publish("ch", "a")
    await asyncio.sleep(0)  # subscribers 0-2 have "a"
    await pubsub.publish("ch", "b")
    for _ in range(5):
        await asyncio.sleep(0)
    assert [s.got for s in subs] == [["a", "b"]] * 7
    # the first step got "b" in a pass of its own; the rest got "a" and "b" together
    assert [len(s.batches) for s in subs] == [2, 2, 2, 1, 1, 1, 1]
    assert subs[3].batches[0] is subs[6].batches[0]
    assert subs[0].batches[1] is subs[2].batches[1]


@pytest.mark.usefixtures("step_of_3")
async def test_a_presence_event_mid_pass_comes_after_every_publication_before_it() -> None:
    pubsub, subs = await _subscribed(7)
    await pubsub.publish("ch", "a")
    await asyncio.sleep(0)
    await pubsub.publish("ch", "b")
    await pubsub._broker.publish_presence(PresenceEvent("ch", True, ClientInfo("x", "ann", None)))
    assert [s.got for s in subs] == [["a", "b", "join"]] * 7
    for _ in range(5):
        await asyncio.sleep(0)
    assert [s.got for s in subs] == [["a", "b", "join"]] * 7  # nothing twice


@pytest.mark.usefixtures("step_of_3")
async def test_who_leaves_mid_pass_gets_nothing_more_who_joins_gets_what_follows() -> None:
    pubsub, subs = await _subscribed(7)
    await pubsub.publish("ch", "a")
    await asyncio.sleep(0)
    await pubsub.unsubscribe(subs[5], "ch")
    late = Batched()
    await pubsub.subscribe(late, "ch")
    await pubsub.publish("ch", "b")
    for _ in range(6):
        await asyncio.sleep(0)
    assert subs[5].got == []
    assert late.got[-1:] == ["b"]
    assert [s.got for i, s in enumerate(subs) if i != 5] == [["a", "b"]] * 6


_OPS = st.lists(
    st.one_of(
        st.just(("publish", 0)),
        st.just(("iterate", 0)),
        st.tuples(st.just("join"), st.integers(0, 9)),
        st.tuples(st.just("leave"), st.integers(0, 9)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_OPS)
def test_every_subscriber_gets_each_publication_once_in_order(ops: list[tuple[str, int]]) -> None:
    """Whatever the interleaving, in each membership: no gap, nothing twice, and everything
    published while subscribed."""

    async def run() -> None:
        saved, pubsub_module.STEP = pubsub_module.STEP, 3
        try:
            pubsub, _ = make()
            subs = [Batched() for _ in range(10)]
            joined_at: dict[int, int] = {}
            #: Where each subscriber's current membership starts in what it got.
            since: dict[int, int] = {}
            published = 0
            for i in range(5):
                await pubsub.subscribe(subs[i], "ch")
                joined_at[i] = 0
                since[i] = 0
            for op, n in ops:
                if op == "publish":
                    published += 1
                    await pubsub.publish("ch", published)
                elif op == "iterate":
                    await asyncio.sleep(0)
                elif op == "join" and n not in joined_at:
                    await pubsub.subscribe(subs[n], "ch")
                    joined_at[n] = published
                    since[n] = len(subs[n].got)
                elif op == "leave" and n in joined_at:
                    await pubsub.unsubscribe(subs[n], "ch")
                    del joined_at[n]
            for _ in range(40):
                await asyncio.sleep(0)
            for i, sub in enumerate(subs):
                got = [g for g in sub.got[since.get(i, 0) :] if isinstance(g, int)]
                assert got == sorted(set(got)), f"subscriber {i}: out of order or twice: {got}"
                if got:
                    assert got == list(range(got[0], got[-1] + 1)), f"subscriber {i}: gap"
                if i in joined_at and published > joined_at[i]:
                    assert got, f"subscriber {i} got nothing"
                    assert got[0] <= joined_at[i] + 1
                    assert got[-1] == published
        finally:
            pubsub_module.STEP = saved

    asyncio.run(run())


class Broken(Batched):
    client_id = "broken"

    def deliver_batch(self, batch: SharedBatch) -> None:
        raise RuntimeError("a bug in a subscriber")


@pytest.mark.usefixtures("step_of_3")
@pytest.mark.parametrize("count", [2, 7])
async def test_a_subscriber_that_fails_does_not_stall_the_channel(
    count: int, caplog: pytest.LogCaptureFixture
) -> None:
    pubsub, subs = await _subscribed(count)
    await pubsub.subscribe(Broken(), "ch")
    for data in ("a", "b"):
        await pubsub.publish("ch", data)
        for _ in range(5):
            await asyncio.sleep(0)
    assert [s.got for s in subs] == [["a", "b"]] * count
    assert "subscriber broken failed to take a batch" in caplog.text
