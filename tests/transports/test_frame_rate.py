"""The frame count of aiohttp's WebSocket routes (``limits.frame_rate``), without I/O."""

from __future__ import annotations

import pytest

from orbiter.transports.frame_rate import FrameBudget


def test_limit_frames_a_second_then_the_next_waits_for_the_next_second() -> None:
    budget = FrameBudget(3)
    assert [budget.take(5.1), budget.take(5.2), budget.take(5.3)] == [None, None, None]
    assert budget.take(5.4) == 6.0  # the fourth: handled at 6, counted there
    assert [budget.take(6.0), budget.take(6.1)] == [None, None]  # 2 more make 3 in 6
    assert budget.take(6.2) == 7.0


def test_a_new_second_starts_a_new_count() -> None:
    budget = FrameBudget(2)
    assert [budget.take(1.0), budget.take(1.9)] == [None, None]
    assert [budget.take(2.0), budget.take(2.5)] == [None, None]
    assert budget.take(9.99) is None  # seconds later: a fresh count, nothing stale
    assert budget.take(9.999) is None
    assert budget.take(9.9999) == 10.0


def test_a_frame_handled_early_by_a_timer_counts_in_the_second_it_waited_for() -> None:
    budget = FrameBudget(1)
    assert budget.take(3.5) is None
    assert budget.take(3.6) == 4.0
    # Woken at 3.9995 (a timer a little early): the next frame counts in second 4 too.
    assert budget.take(3.9995) == 5.0


@pytest.mark.parametrize("limit", [1, 2, 200])
def test_exactly_limit_frames_pass_in_a_second(limit: int) -> None:
    budget = FrameBudget(limit)
    passed = [budget.take(7.0 + i / (limit + 10)) for i in range(limit + 1)]
    assert passed[:limit] == [None] * limit
    assert passed[limit] == 8.0
