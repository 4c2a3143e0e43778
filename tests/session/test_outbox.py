from __future__ import annotations

import asyncio

from orbiter.session.outbox import Outbox


async def test_take_returns_everything_queued_as_one_batch() -> None:
    box = Outbox(100)
    assert box.put(b"a")
    assert box.put(b"bc")
    assert box.queued_bytes == 3
    assert await box.take() == [b"a", b"bc"]
    assert box.queued_bytes == 0


async def test_take_waits_for_a_put() -> None:
    box = Outbox(100)
    waiter = asyncio.create_task(box.take())
    await asyncio.sleep(0)
    assert not waiter.done()
    box.put(b"x")
    assert await asyncio.wait_for(waiter, 1) == [b"x"]


async def test_put_refuses_past_the_limit() -> None:
    box = Outbox(5)
    assert box.put(b"1234")
    assert not box.put(b"56")
    assert await box.take() == [b"1234"]


async def test_close_drains_then_ends_or_discards() -> None:
    box = Outbox(100)
    box.put(b"last")
    box.close()
    assert box.put(b"ignored")
    assert await box.take() == [b"last"]
    assert await box.take() == []
    other = Outbox(100)
    other.put(b"x")
    other.close(discard=True)
    assert await other.take() == []


async def test_close_wakes_a_waiting_take() -> None:
    box = Outbox(100)
    waiter = asyncio.create_task(box.take())
    await asyncio.sleep(0)
    box.close()
    assert await asyncio.wait_for(waiter, 1) == []
