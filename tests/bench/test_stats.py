"""The bench's arithmetic: percentiles from histogram buckets, expected counts, loss."""

from __future__ import annotations

import pytest

from orbiter.bench import stats
from orbiter.bench.scenarios import preset


def test_percentile_picks_the_bucket_holding_the_rank() -> None:
    buckets = [[0, 1, 50], [10, 11, 40], [100, 101, 9], [1000, 1010, 1]]
    assert stats.percentile(buckets, 0.5) == 0
    assert stats.percentile(buckets, 0.51) == 10
    assert stats.percentile(buckets, 0.9) == 10
    assert stats.percentile(buckets, 0.99) == 100
    assert stats.percentile(buckets, 1.0) == 1009
    assert stats.percentile(buckets, 1.0, maximum=1003) == 1003


def test_percentile_of_unsorted_buckets_and_of_nothing() -> None:
    assert stats.percentile([[500, 501, 1], [5, 6, 3]], 0.75) == 5
    assert stats.percentile([[500, 501, 1], [5, 6, 3]], 0.76) == 500
    assert stats.percentile([], 0.99) == 0.0


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5])
def test_percentile_rejects_fractions_outside_0_1(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        stats.percentile([[1, 2, 1]], fraction)


def test_expected_per_subscriber_spreads_publications_round_robin() -> None:
    # 10 publications over 4 channels: channels 0 and 1 get 3, channels 2 and 3 get 2.
    assert stats.expected_per_subscriber([0, 1, 2, 3, 0], 4, 10) == [3, 3, 2, 2, 3]
    assert stats.expected_per_subscriber([0, 0, 0], 1, 7) == [7, 7, 7]


def test_loss_counts_missing_publications_and_lossy_subscribers() -> None:
    assert stats.loss([5, 5, 5], [5, 3, 5]) == (2, 1)
    assert stats.loss([5, 5], [6, 5]) == (0, 0)  # more than expected is not loss


def test_per_second() -> None:
    assert stats.per_second(1000, 0, 500_000) == 2000
    assert stats.per_second(1000, 5, 5) == 0.0


def test_presets_and_overrides_are_checked() -> None:
    assert preset("fanout-rate").rate == 200
    assert preset("fanout", subscribers=10).subscribers == 10
    with pytest.raises(ValueError, match="unknown preset"):
        preset("nosuch")
    with pytest.raises(ValueError, match="payload"):
        preset("fanout", payload=5)
    with pytest.raises(ValueError, match="batch"):
        preset("many-channels-batch", batch=20_000)
