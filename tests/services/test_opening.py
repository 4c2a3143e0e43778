"""Opening: the first caller opens, the others wait and see its outcome."""

from __future__ import annotations

import asyncio

import pytest

from orbiter.services.opening import Opening


async def test_waiters_go_on_once_the_first_caller_opened() -> None:
    opening, release = Opening(), asyncio.Event()
    first = asyncio.create_task(opening.run(release.wait(), lambda: None))
    waiter = asyncio.create_task(opening.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    assert not opening.settled
    release.set()
    await asyncio.gather(first, waiter)
    assert opening.open
    await opening.wait()  # at once, once open


async def test_waiters_see_the_first_callers_failure_and_the_entry_is_forgotten() -> None:
    opening, release = Opening(), asyncio.Event()
    forgotten: list[bool] = []

    async def failing() -> None:
        await release.wait()
        raise ConnectionError("engine down")

    first = asyncio.create_task(opening.run(failing(), lambda: forgotten.append(True)))
    waiter = asyncio.create_task(opening.wait())
    await asyncio.sleep(0)
    assert not opening.settled
    release.set()
    for task in (first, waiter):
        with pytest.raises(ConnectionError):
            await task
    assert forgotten == [True]
    assert opening.settled
    assert not opening.open
