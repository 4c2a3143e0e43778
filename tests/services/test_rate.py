"""The publish token bucket: a burst, then the rate."""

from __future__ import annotations

from orbiter.services.rate import TokenBucket


def test_burst_then_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.4) is False  # 0.8 of a token
    assert bucket.take(0.5) is True  # one whole token after 0.5 s at 2/s
    assert bucket.take(0.5) is False


def test_idle_time_refills_only_up_to_the_burst() -> None:
    bucket = TokenBucket(rate=10.0, burst=2, now=0.0)
    assert bucket.take(100.0)
    assert bucket.take(100.0)
    assert not bucket.take(100.0)


def test_a_clock_that_goes_back_gives_nothing() -> None:
    bucket = TokenBucket(rate=1.0, burst=1, now=10.0)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)
