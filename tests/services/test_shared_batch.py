"""SharedBatch: each kind frames a batch once, whatever the mix of kinds."""

from __future__ import annotations

from collections.abc import Callable

from orbiter.model import Publication
from orbiter.services.shared_batch import SharedBatch


def batch() -> SharedBatch:
    pubs = [Publication("c", offset, "e", offset, 0.0) for offset in (3, 4)]
    return SharedBatch("c", pubs)


def test_each_kind_is_framed_once_and_kinds_do_not_mix() -> None:
    shared = batch()
    calls: list[str] = []

    def framing(name: str) -> Callable[[SharedBatch], bytes]:
        def frame(shared: SharedBatch) -> bytes:
            calls.append(name)
            return name.encode() + b":" + b",".join(b"m%d" % p.offset for p in shared.pubs)

        return frame

    kinds = ["ws", "sockjs", "sse"]
    for _ in range(3):  # subscribers of every kind, interleaved
        for kind in kinds:
            assert shared.framed(kind, framing(kind)) == kind.encode() + b":m3,m4"
    assert calls == kinds
    assert (shared.previous_offset, shared.epoch, shared.last_offset) == (2, "e", 4)


def test_a_framing_may_use_another_and_keeps_the_first_slot() -> None:
    shared = batch()
    inner: list[int] = []

    def pushes(b: SharedBatch) -> list[bytes]:
        inner.append(1)
        return [b"m%d" % p.offset for p in b.pubs]

    def frame(b: SharedBatch) -> bytes:
        return b"|".join(b.framed("native", pushes))

    for _ in range(3):
        assert shared.framed("ws", frame) == b"m3|m4"
        assert shared.framed("native", pushes) == [b"m3", b"m4"]
    assert inner == [1]
