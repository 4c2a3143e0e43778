"""The outbox pulled from (STOMP writers, the Orbited streams): the Pull sink and its take."""

from __future__ import annotations

import asyncio

from orbiter.model import Publication
from orbiter.protocol.native import encode_publication
from orbiter.services.outbox import Outbox, Pull
from orbiter.services.shared_batch import SharedBatch


async def test_take_returns_everything_queued_as_one_batch() -> None:
    box = Outbox(100)
    pull = Pull(box)
    assert box.put(b"a")
    assert box.put(b"bc")
    assert box.queued_bytes == 3
    assert await pull.take() == [b"a", b"bc"]
    assert box.queued_bytes == 0


async def test_what_was_queued_before_the_pull_is_taken() -> None:
    box = Outbox(100)
    assert box.put(b"early")
    assert await Pull(box).take() == [b"early"]


async def test_take_waits_for_a_put() -> None:
    box = Outbox(100)
    pull = Pull(box)
    waiter = asyncio.create_task(pull.take())
    await asyncio.sleep(0)
    assert not waiter.done()
    box.put(b"x")
    assert await asyncio.wait_for(waiter, 1) == [b"x"]


async def test_put_refuses_past_the_limit() -> None:
    box = Outbox(5)
    pull = Pull(box)
    assert box.put(b"1234")
    assert not box.put(b"56")
    assert await pull.take() == [b"1234"]


async def test_a_batch_counts_in_the_limit_until_taken() -> None:
    pubs = [Publication("c", offset, "e", offset, 0.0) for offset in (1, 2)]
    messages = [encode_publication(pub) for pub in pubs]
    box = Outbox(sum(map(len, messages)) + 3)
    pull = Pull(box)
    assert box.put_batch(SharedBatch("c", pubs))  # an empty outbox: handed over at once
    assert pull.backlog() == sum(map(len, messages))
    assert not box.put(b"four")
    assert box.put(b"thr")
    assert await pull.take() == [*messages, b"thr"]
    assert pull.backlog() == 0


async def test_close_drains_then_ends_or_discards() -> None:
    box = Outbox(100)
    pull = Pull(box)
    box.put(b"last")
    box.close()
    assert box.put(b"ignored")
    assert await pull.take() == [b"last"]
    assert await pull.take() == []
    other = Outbox(100)
    other_pull = Pull(other)
    other.put(b"x")
    other.close(discard=True)
    assert await other_pull.take() == []


async def test_close_wakes_a_waiting_take() -> None:
    box = Outbox(100)
    pull = Pull(box)
    waiter = asyncio.create_task(pull.take())
    await asyncio.sleep(0)
    box.close()
    assert await asyncio.wait_for(waiter, 1) == []
