"""SharedBatch: each transport kind frames a batch once, whatever the mix of kinds."""

from __future__ import annotations

from collections.abc import Callable

from orbiter.model import Publication
from orbiter.services.shared_batch import SharedBatch


def batch() -> SharedBatch:
    pubs = [Publication("c", offset, "e", offset, 0.0) for offset in (3, 4)]
    return SharedBatch("c", pubs, [b"m3", b"m4"])


def test_each_kind_is_framed_once_and_kinds_do_not_mix() -> None:
    shared = batch()
    calls: list[str] = []

    def framing(name: str) -> Callable[[list[bytes]], bytes]:
        def frame(messages: list[bytes]) -> bytes:
            calls.append(name)
            return name.encode() + b":" + b",".join(messages)

        return frame

    kinds = ["ws", "sockjs", "sse"]
    for _ in range(3):  # subscribers of every kind, interleaved
        for kind in kinds:
            assert shared.framed(kind, framing(kind)) == kind.encode() + b":m3,m4"
    assert calls == kinds
    assert (shared.size, shared.first_offset, shared.last_offset) == (4, 3, 4)
