"""Recovery: held live publications, bounded in bytes, and those newer than the page."""

from __future__ import annotations

from orbiter.model import Publication, StreamPosition
from orbiter.services.recovery import Recovery


def pub(offset: int) -> Publication:
    return Publication("c", offset, "e", offset, 0.0)


def test_only_publications_newer_than_the_page_follow_it_in_order() -> None:
    recovery: Recovery[str] = Recovery(limit=100)
    for offset in (3, 4, 5):
        assert recovery.hold(pub(offset), f"m{offset}", 10)
    newer = recovery.newer_than(StreamPosition(4, "e"))
    assert [item for _, item in newer] == ["m5"]


def test_holding_past_the_byte_limit_says_so() -> None:
    recovery: Recovery[str] = Recovery(limit=15)
    assert recovery.hold(pub(1), "a", 10)
    assert not recovery.hold(pub(2), "b", 10)
