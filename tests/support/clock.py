"""A clock the test moves: orbiter's timers driven without waiting on the real one.

:class:`ManualClock` is a ``Callable[[], float]`` to pass where orbiter's code takes
a ``clock``, and, through the :func:`manual_clock` fixture, the running event loop's
``time()`` as well. Why the loop too: orbiter's timers are the loop's own
(``call_later``, ``asyncio.sleep``, ``wait_for``), and code that reads
``time.monotonic()`` schedules them on ``loop.time()`` (the same clock in
production), so patching only one of the two would let them disagree. With both on
one clock a test reads as the rule: ``await clock.advance(0.05)`` and every timer due
by then has fired, in the order of their deadlines, each at its own deadline (so a
timer that re-arms itself fires as often as it would have in real time), and the
tasks they woke have run. Time stands still otherwise: a test that waits for a timer
without advancing the clock waits until pytest-timeout ends it, never passes by luck.
Wall time (``time.time()``) is not moved: code that reads it (a token's expiry)
turns it into a loop timer once, and that timer runs on this clock. Sockets and
threads still work in real time: :meth:`ManualClock.settle` lets their callbacks run.

Only the default asyncio loop's ``time`` can be replaced (uvloop's cannot); the
pending timers are read from its ``_scheduled`` heap, which every CPython asyncio
loop keeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest_asyncio

#: Loop iterations run after each step of :meth:`ManualClock.advance`: enough for a
#: timer's callback, the task it wakes and what that task awaits at once to run.
_SETTLE_ITERATIONS = 20


class ManualClock:
    """Monotonic seconds that move only when the test says so.

    It starts at a round number, so that timers re-armed from their own deadlines
    (a sweep every second) fall on exact sums: a test's "at 6 s" is 6 s, not 5.9999.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    async def settle(self) -> None:
        """Run what is ready now (callbacks, woken tasks), without moving the clock."""
        for _ in range(_SETTLE_ITERATIONS):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move ``seconds`` forward, stopping at each timer due by then so it fires on time."""
        assert seconds >= 0, "a monotonic clock does not go back"
        target = self.now + seconds
        await self.settle()
        while (when := _next_timer(asyncio.get_running_loop())) is not None and when <= target:
            self.now = max(self.now, when)
            await self.settle()
        self.now = target
        await self.settle()


def _next_timer(loop: asyncio.AbstractEventLoop) -> float | None:
    """The deadline of the loop's earliest timer not cancelled, if any."""
    scheduled: list[asyncio.TimerHandle] = getattr(loop, "_scheduled")  # noqa: B009
    pending = [handle.when() for handle in scheduled if not handle.cancelled()]
    return min(pending) if pending else None


@pytest_asyncio.fixture
async def manual_clock() -> AsyncIterator[ManualClock]:
    """A :class:`ManualClock` that is also the running loop's ``time()`` for the test."""
    loop = asyncio.get_running_loop()
    assert hasattr(loop, "_scheduled"), "needs asyncio's own event loop, not uvloop"
    clock = ManualClock()
    loop.time = clock  # type: ignore[method-assign]
    try:
        yield clock
    finally:
        del loop.time
