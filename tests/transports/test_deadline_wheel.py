"""One timer for many connections' deadlines, driven by a clock the test moves."""

from __future__ import annotations

import asyncio

import pytest

from orbiter.transports.deadline_wheel import DeadlineWheel
from tests.support.clock import ManualClock

#: Float slack for times summed from a clock of 1000.0 and steps that binary floats
#: cannot hold exactly.
EPSILON = 1e-9


class Conn:
    def __init__(self, wheel: DeadlineWheel, times: list[float]) -> None:
        self.wheel_bucket = 0
        self._wheel = wheel
        self.times = times  # when to ask to be woken next, in turn (seconds from now)
        self.woken: list[float] = []

    def on_deadline(self, now: float) -> float | None:
        self.woken.append(now)
        if not self.times:
            return None
        return now + self.times.pop(0)


def loop_timers() -> int:
    """Timers the running loop holds that are not cancelled."""
    scheduled: list[asyncio.TimerHandle] = getattr(asyncio.get_running_loop(), "_scheduled")  # noqa: B009
    return sum(not handle.cancelled() for handle in scheduled)


async def test_connections_are_woken_at_their_times_with_one_timer(
    manual_clock: ManualClock,
) -> None:
    wheel = DeadlineWheel(0.02, clock=manual_clock)
    start = manual_clock()
    conns = [Conn(wheel, []) for _ in range(100)]
    for i, conn in enumerate(conns):
        wheel.wake_at(conn, start + 0.05 + (i % 5) * 0.02)
    assert len(wheel) == 100
    assert loop_timers() == 1
    await manual_clock.advance(0.04)
    assert not any(conn.woken for conn in conns)
    await manual_clock.advance(0.21)
    for i, conn in enumerate(conns):
        assert len(conn.woken) == 1
        late = conn.woken[0] - (start + 0.05 + (i % 5) * 0.02)
        assert -EPSILON <= late < 0.02 + EPSILON  # at its bucket's end, within a resolution
    assert len(wheel) == 0
    assert loop_timers() == 0


async def test_a_woken_connection_asks_again_and_can_stop(manual_clock: ManualClock) -> None:
    wheel = DeadlineWheel(0.01, clock=manual_clock)
    conn = Conn(wheel, [0.03, 0.03])
    wheel.wake_at(conn, manual_clock() + 0.02)
    await manual_clock.advance(0.2)
    assert len(conn.woken) == 3
    gaps = [later - earlier for earlier, later in zip(conn.woken, conn.woken[1:], strict=False)]
    assert all(0.03 - EPSILON <= gap < 0.04 + EPSILON for gap in gaps), gaps
    assert len(wheel) == 0


async def test_an_earlier_time_moves_a_connection_and_a_later_one_does_not(
    manual_clock: ManualClock,
) -> None:
    wheel = DeadlineWheel(0.01, clock=manual_clock)
    conn = Conn(wheel, [])
    now = manual_clock()
    wheel.wake_at(conn, now + 10)
    wheel.wake_at(conn, now + 0.03)
    wheel.wake_at(conn, now + 5)
    assert len(wheel) == 1
    await manual_clock.advance(0.1)
    assert len(conn.woken) == 1
    assert 0.03 - EPSILON <= conn.woken[0] - now < 0.04 + EPSILON
    assert len(wheel) == 0


async def test_a_forgotten_connection_is_not_held_or_woken(manual_clock: ManualClock) -> None:
    wheel = DeadlineWheel(0.01, clock=manual_clock)
    kept, dropped = Conn(wheel, []), Conn(wheel, [])
    now = manual_clock()
    wheel.wake_at(kept, now + 0.03)
    wheel.wake_at(dropped, now + 0.03)
    wheel.forget(dropped)
    assert len(wheel) == 1
    await manual_clock.advance(0.1)
    assert (len(kept.woken), len(dropped.woken)) == (1, 0)


async def test_a_failing_connection_does_not_stop_the_others(manual_clock: ManualClock) -> None:
    wheel = DeadlineWheel(0.01, clock=manual_clock)

    class Broken(Conn):
        def on_deadline(self, now: float) -> float | None:
            raise RuntimeError("boom")

    broken, fine = Broken(wheel, []), Conn(wheel, [0.02])
    now = manual_clock()
    wheel.wake_at(broken, now + 0.02)
    wheel.wake_at(fine, now + 0.02)
    await manual_clock.advance(0.15)
    assert len(fine.woken) == 2


def test_the_resolution_must_be_positive() -> None:
    with pytest.raises(ValueError, match="resolution must be > 0"):
        DeadlineWheel(0)
