"""orbiter.tasks.stop: a task is cancelled until it has ended, even one that swallowed a
cancellation (as Python 3.11's ``asyncio.wait_for`` can)."""

from __future__ import annotations

import asyncio

import pytest

from orbiter.tasks import stop


async def test_a_task_that_swallows_a_cancellation_is_cancelled_again() -> None:
    swallowed = 0

    async def loop_forever() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:  # the second cancellation ends it
                    raise
                swallowed += 1  # as wait_for does when its awaitable just completed

    task = asyncio.create_task(loop_forever())
    await asyncio.sleep(0)
    await asyncio.wait_for(stop(task, patience=0.05), 5)
    assert task.cancelled()
    assert swallowed == 1


async def test_a_task_that_ended_with_an_error_raises_it_and_none_is_nothing() -> None:
    async def fail() -> None:
        raise ValueError("broken")

    task = asyncio.create_task(fail())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="broken"):
        await stop(task)
    await stop(None)


async def test_an_ordinary_task_stops_at_the_first_cancellation_without_waiting() -> None:
    task = asyncio.create_task(asyncio.sleep(3600))
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await stop(task, patience=30)
    assert task.cancelled()
    assert loop.time() - started < 5  # not the patience: it ended at once
