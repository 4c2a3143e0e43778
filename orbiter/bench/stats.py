"""The numbers of a run: percentiles from the load generator's histogram, rates, loss.

Pure functions over what ``loadgen`` reports, so the arithmetic is tested
without a network.
"""

from __future__ import annotations

from collections.abc import Sequence

#: One histogram bucket: [lower bound µs, upper bound µs, count].
Bucket = Sequence[int]


def percentile(buckets: Sequence[Bucket], fraction: float, maximum: int | None = None) -> float:
    """The latency (µs) below which ``fraction`` of the samples fall.

    The value is the upper bound of the bucket that holds the sample of rank
    ``ceil(fraction * n)`` (buckets are under 1% wide), capped at ``maximum``.
    """
    if not 0 < fraction <= 1:
        raise ValueError("fraction must be in (0, 1]")
    total = sum(b[2] for b in buckets)
    if total == 0:
        return 0.0
    rank = max(1, -int(-fraction * total // 1))
    seen = 0
    for low, high, count in sorted(buckets, key=lambda b: b[0]):
        seen += count
        if seen >= rank:
            value = float(high - 1 if high > low + 1 else low)
            return min(value, float(maximum)) if maximum is not None else value
    raise AssertionError("unreachable")


def expected_per_subscriber(
    subscriber_channels: Sequence[int], channels: int, messages: int
) -> list[int]:
    """How many publications each subscriber should get.

    Publication ``seq`` goes to channel ``seq % channels``; subscriber ``i``
    is on channel ``subscriber_channels[i]``.
    """
    if channels <= 0:
        return [0 for _ in subscriber_channels]
    base, extra = divmod(messages, channels)
    return [base + (1 if ch < extra else 0) for ch in subscriber_channels]


def loss(expected: Sequence[int], unique: Sequence[int]) -> tuple[int, int]:
    """(publications lost, subscribers that lost any) from expected vs unique counts."""
    lost = 0
    subscribers = 0
    for want, got in zip(expected, unique, strict=True):
        if got < want:
            lost += want - got
            subscribers += 1
    return lost, subscribers


def per_second(count: float, start_us: int, end_us: int) -> float:
    span = (end_us - start_us) / 1e6
    return count / span if span > 0 else 0.0
