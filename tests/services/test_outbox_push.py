"""The pushed outbox (WebSocket): one write per loop iteration, shared batches, limits, close."""

from __future__ import annotations

import asyncio

from orbiter.model import Publication
from orbiter.protocol.native import encode_publication
from orbiter.services.outbox import Flusher, Outbox
from orbiter.services.pushes import pushes
from orbiter.services.shared_batch import SharedBatch
from orbiter.transports.websocket import text_frame
from tests.support.clock import ManualClock


class RecordingSink:
    def __init__(self, backlog: int = 0) -> None:
        self.writes: list[object] = []
        self.pending = backlog

    def backlog(self) -> int:
        return self.pending

    def write(self, messages: list[bytes]) -> None:
        self.writes.append(list(messages))

    def write_batch(self, batch: SharedBatch) -> None:
        self.writes.append(batch)


def pub(offset: int) -> Publication:
    return Publication("c", offset, "e", offset, 0.0)


def batch(*offsets: int) -> SharedBatch:
    return SharedBatch("c", [pub(o) for o in offsets])


def m(offset: int) -> bytes:
    """The native push of publication ``offset``."""
    return encode_publication(pub(offset))


def pushed(limit: int = 100, backlog: int = 0) -> tuple[Outbox, RecordingSink, list[int]]:
    box = Outbox(limit)
    sink = RecordingSink(backlog)
    closed: list[int] = []
    box.attach(sink, Flusher(), lambda: closed.append(1))
    return box, sink, closed


async def test_puts_of_one_iteration_become_one_write() -> None:
    box, sink, _ = pushed()
    assert box.put(b"a")
    assert box.put(b"b")
    assert sink.writes == []
    await asyncio.sleep(0)
    assert sink.writes == [[b"a", b"b"]]
    assert box.queued_bytes == 0


async def test_a_flusher_with_a_delay_hands_over_that_long_after_the_first_put(
    manual_clock: ManualClock,
) -> None:
    box, sink = Outbox(100), RecordingSink()
    box.attach(sink, Flusher(delay=0.05), lambda: None)
    assert box.put(b"a")
    await manual_clock.advance(0.03)
    assert box.put(b"b")  # joins the hand-over the first one started
    await manual_clock.advance(0.019)
    assert sink.writes == []
    await manual_clock.advance(0.002)
    assert sink.writes == [[b"a", b"b"]]


async def test_a_batch_to_an_empty_outbox_is_written_at_once_and_shared() -> None:
    box, sink, _ = pushed()
    b = batch(1, 2)
    assert box.put_batch(b)
    assert sink.writes == [b]


async def test_a_batch_behind_queued_messages_keeps_their_order() -> None:
    box, sink, _ = pushed(limit=1000)
    assert box.put(b"reply")
    assert box.put_batch(batch(1, 2))
    await asyncio.sleep(0)
    assert sink.writes == [[b"reply", m(1), m(2)]]


async def test_the_limit_counts_what_the_transport_has_not_sent() -> None:
    box, _, _ = pushed(limit=100, backlog=95)
    assert not box.put(b"123456")
    assert not box.put_batch(batch(1, 2, 3))
    assert box.put(b"1234")
    assert box.put(b"123456", force=True)


async def test_close_pushes_what_is_queued_then_calls_back_once() -> None:
    box, sink, closed = pushed()
    box.put(b"last")
    box.close()
    box.close()
    assert sink.writes == [[b"last"]]
    assert closed == [1]
    other, other_sink, other_closed = pushed()
    other.put(b"dropped")
    other.close(discard=True)
    assert other_sink.writes == []
    assert other_closed == [1]


async def test_a_shared_batch_is_framed_once_per_kind() -> None:
    b = batch(1, 2)
    calls: list[int] = []

    def frame(shared: SharedBatch) -> bytes:
        calls.append(1)
        return b"|".join(pushes(shared))

    assert [b.framed("ws", frame) for _ in range(3)] == [m(1) + b"|" + m(2)] * 3
    assert calls == [1]
    assert (b.previous_offset, b.epoch, b.last_offset) == (0, "e", 2)
    assert pushes(b) is b.native
    assert b.native_size == len(m(1)) + len(m(2))


def test_text_frame_lengths() -> None:
    assert text_frame(b"x" * 125)[:2] == b"\x81\x7d"
    assert text_frame(b"x" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert text_frame(b"x" * 65536)[:10] == b"\x81\x7f" + (65536).to_bytes(8, "big")
    assert len(text_frame(b"x" * 65536)) == 65546
