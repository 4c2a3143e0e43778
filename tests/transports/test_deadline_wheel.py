"""One timer for many connections' deadlines."""

from __future__ import annotations

import asyncio
import time

import pytest

from orbiter.transports.deadline_wheel import DeadlineWheel


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


async def test_connections_are_woken_at_their_times_with_one_timer() -> None:
    wheel = DeadlineWheel(0.02)
    start = time.monotonic()
    conns = [Conn(wheel, []) for _ in range(100)]
    for i, conn in enumerate(conns):
        wheel.wake_at(conn, start + 0.05 + (i % 5) * 0.02)
    assert len(wheel) == 100
    await asyncio.sleep(0.25)
    for i, conn in enumerate(conns):
        assert len(conn.woken) == 1
        late = conn.woken[0] - (start + 0.05 + (i % 5) * 0.02)
        assert -0.002 <= late < 0.08
    assert len(wheel) == 0


async def test_a_woken_connection_asks_again_and_can_stop() -> None:
    wheel = DeadlineWheel(0.01)
    conn = Conn(wheel, [0.03, 0.03])
    wheel.wake_at(conn, time.monotonic() + 0.02)
    await asyncio.sleep(0.2)
    assert len(conn.woken) == 3
    assert len(wheel) == 0


async def test_an_earlier_time_moves_a_connection_and_a_later_one_does_not() -> None:
    wheel = DeadlineWheel(0.01)
    conn = Conn(wheel, [])
    now = time.monotonic()
    wheel.wake_at(conn, now + 10)
    wheel.wake_at(conn, now + 0.03)
    wheel.wake_at(conn, now + 5)
    assert len(wheel) == 1
    await asyncio.sleep(0.1)
    assert len(conn.woken) == 1
    assert len(wheel) == 0


async def test_a_forgotten_connection_is_not_held_or_woken() -> None:
    wheel = DeadlineWheel(0.01)
    kept, dropped = Conn(wheel, []), Conn(wheel, [])
    now = time.monotonic()
    wheel.wake_at(kept, now + 0.03)
    wheel.wake_at(dropped, now + 0.03)
    wheel.forget(dropped)
    assert len(wheel) == 1
    await asyncio.sleep(0.1)
    assert (len(kept.woken), len(dropped.woken)) == (1, 0)


async def test_a_failing_connection_does_not_stop_the_others() -> None:
    wheel = DeadlineWheel(0.01)

    class Broken(Conn):
        def on_deadline(self, now: float) -> float | None:
            raise RuntimeError("boom")

    broken, fine = Broken(wheel, []), Conn(wheel, [0.02])
    now = time.monotonic()
    wheel.wake_at(broken, now + 0.02)
    wheel.wake_at(fine, now + 0.02)
    await asyncio.sleep(0.15)
    assert len(fine.woken) == 2


def test_the_resolution_must_be_positive() -> None:
    with pytest.raises(ValueError, match="resolution must be > 0"):
        DeadlineWheel(0)
