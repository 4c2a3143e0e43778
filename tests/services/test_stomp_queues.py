"""STOMP queues without I/O: bounds in messages and bytes (per queue, per client address,
in all), round-robin, room, redelivery order, deadlines and the sweep that frees expired
messages."""

from __future__ import annotations

import math

import pytest

from orbiter.services.stomp.queues import (
    HEADER_OVERHEAD,
    MESSAGE_OVERHEAD,
    MessageQueue,
    QueueBook,
    QueuedMessage,
    QueueFull,
)

BIG = 1 << 40
#: The client address messages come from unless a test says otherwise (TEST-NET-1).
CLIENT = "192.0.2.1"


class Clock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeConsumer:
    """A consumer with a fixed capacity (queues need acknowledges, has_room and offer)."""

    def __init__(self, room: int = 1_000, accept: bool = True, acknowledges: bool = False) -> None:
        self.room = room
        self.accept = accept
        self.acknowledges = acknowledges
        self.got: list[QueuedMessage] = []

    def has_room(self) -> bool:
        return self.accept and len(self.got) < self.room

    def offer(self, message: QueuedMessage) -> bool:
        if not self.accept:
            return False
        self.got.append(message)
        return True


def make_book(
    *,
    max_length: int = 10_000,
    max_queues: int = 10_000,
    max_queue_bytes: int = BIG,
    max_total_bytes: int = BIG,
    max_client_bytes: int = BIG,
    ttl: float = 3600.0,
    clock: Clock | None = None,
    wall: Clock | None = None,
) -> QueueBook:
    return QueueBook(
        max_length=max_length,
        max_queues=max_queues,
        max_queue_bytes=max_queue_bytes,
        max_total_bytes=max_total_bytes,
        max_client_bytes=max_client_bytes,
        ttl=ttl,
        clock=clock or Clock(),
        wall=wall or Clock(1_700_000_000.0),
    )


def make_queue(book: QueueBook | None = None, name: str = "q") -> MessageQueue:
    queue = (book if book is not None else make_book()).get(name)
    assert queue is not None
    return queue


def msg(
    n: int, body: bytes | None = None, expires: float = math.inf, sender: str = CLIENT
) -> QueuedMessage:
    """Message ``n``, sent from the address ``sender``."""
    data = str(n).encode() if body is None else body
    return QueuedMessage(f"m{n}", (), data, expires, sender=sender)


def bodies(consumer: FakeConsumer) -> list[bytes]:
    return [m.body for m in consumer.got]


# ------------------------------------------------------------------ order and room


def test_messages_wait_for_a_consumer_and_are_bounded():
    queue = make_queue(make_book(max_length=3))
    for i in range(3):
        queue.put(msg(i))
    with pytest.raises(QueueFull, match=r"holds 3 messages .*stomp\.max_queue_length") as full:
        queue.put(msg(3))
    assert full.value.counter == "limit_queue_length"
    consumer = FakeConsumer()
    queue.add(consumer)
    assert bodies(consumer) == [b"0", b"1", b"2"]
    queue.put(msg(3))
    assert bodies(consumer)[-1] == b"3"


def test_round_robin_skips_consumers_without_room():
    queue = make_queue()
    a, b, c = FakeConsumer(), FakeConsumer(room=1), FakeConsumer()
    for consumer in (a, b, c):
        queue.add(consumer)
    for i in range(7):
        queue.put(msg(i))
    # b is full after one; its turns go to the next in line.
    assert bodies(a) == [b"0", b"3", b"5"]
    assert bodies(b) == [b"1"]
    assert bodies(c) == [b"2", b"4", b"6"]


def test_full_consumers_leave_messages_queued_until_room():
    queue = make_queue()
    consumer = FakeConsumer(room=2)
    queue.add(consumer)
    for i in range(4):
        queue.put(msg(i))
    assert bodies(consumer) == [b"0", b"1"]
    assert len(queue.pending) == 2
    consumer.room = 3
    queue.dispatch()
    assert bodies(consumer) == [b"0", b"1", b"2"]


def test_put_back_goes_first_marked_redelivered_past_the_limit():
    queue = make_queue(make_book(max_length=2))
    queue.put(msg(0))
    queue.put(msg(1))
    queue.put_back([msg(8), msg(9)])
    assert [m.message_id for m in queue.pending] == ["m8", "m9", "m0", "m1"]
    assert [m.redelivered for m in queue.pending] == [True, True, False, False]


def test_a_refused_offer_keeps_the_message():
    queue = make_queue()
    refusing = FakeConsumer()
    queue.add(refusing)
    refusing.accept = False
    queue.put(msg(0))
    assert [m.message_id for m in queue.pending] == ["m0"]
    taker = FakeConsumer()
    queue.add(taker)
    assert bodies(taker) == [b"0"]


class Refusing(FakeConsumer):
    """Says it has room, then turns every message down (a buffer filled meanwhile)."""

    def has_room(self) -> bool:
        return True

    def offer(self, message: QueuedMessage) -> bool:
        return False


def test_consumers_that_turn_every_message_down_do_not_spin_the_dispatch():
    queue = make_queue()
    queue.add(Refusing())
    queue.add(Refusing())
    queue.put(msg(0))  # returns: the message waits for room
    assert [m.message_id for m in queue.pending] == ["m0"]


def test_removed_consumers_get_nothing_and_idle_queues_are_dropped():
    book = make_book()
    queue = make_queue(book)
    consumer = FakeConsumer()
    queue.add(consumer)
    queue.remove(consumer)
    queue.put(msg(0))
    assert consumer.got == []
    book.tidy(queue)
    assert len(book) == 1
    taker = FakeConsumer()
    queue.add(taker)
    queue.remove(taker)
    book.tidy(queue)
    assert len(book) == 0
    assert book.find("q") is None


def test_the_number_of_queues_is_bounded():
    book = make_book(max_queues=2)
    assert book.get("a") is not None
    assert book.get("b") is not None
    assert book.get("c") is None
    assert book.get("a") is not None  # an existing queue is always found


# ------------------------------------------------------------------------- bytes


def test_a_message_counts_its_body_its_headers_and_the_overhead():
    plain = QueuedMessage(
        "m", (("content-type", "text/plain"), ("x", "y")), b"b" * 1000, sender=CLIENT
    )
    assert plain.size == MESSAGE_OVERHEAD + 1000 + 2 * HEADER_OVERHEAD + 12 + 10 + 1 + 1
    assert (MESSAGE_OVERHEAD, HEADER_OVERHEAD) == (256, 160)
    # Text that is not ASCII counts four bytes a character (the most it can take).
    wide = QueuedMessage("m", (("n", "\u00e9\u00e9"),), b"", sender=CLIENT)
    assert wide.size == MESSAGE_OVERHEAD + HEADER_OVERHEAD + 1 + 8
    # Many empty headers cost what their objects cost, not nothing.
    many = QueuedMessage("m", tuple((f"h{i}", "") for i in range(64)), b"", sender=CLIENT)
    assert many.size >= 64 * HEADER_OVERHEAD


def test_one_queue_holds_at_most_max_queue_bytes():
    size = msg(0, b"x" * 1000).size
    book = make_book(max_queue_bytes=3 * size)
    queue = make_queue(book)
    for i in range(3):
        queue.put(msg(i, b"x" * 1000))
    assert queue.bytes == book.bytes == 3 * size
    with pytest.raises(QueueFull, match=r"stomp\.max_queue_bytes") as full:
        queue.put(msg(3, b"x" * 1000))
    assert full.value.counter == "limit_queue_bytes"
    assert f"at most {3 * size} bytes" in str(full.value)
    assert len(queue.pending) == 3
    assert book.bytes == 3 * size  # the refused message counts nothing
    # Another queue has its own budget.
    other = make_queue(book, "other")
    other.put(msg(9, b"x" * 1000))


def test_the_per_queue_budget_is_exact():
    size = msg(0, b"x" * 1000).size
    queue = make_queue(make_book(max_queue_bytes=3 * size - 1))
    queue.put(msg(0, b"x" * 1000))
    queue.put(msg(1, b"x" * 1000))
    with pytest.raises(QueueFull):
        queue.put(msg(2, b"x" * 1000))
    # A message smaller by one byte fits exactly.
    queue.put(msg(2, b"x" * 999))
    assert queue.bytes == 3 * size - 1


def test_all_queues_together_hold_at_most_max_total_bytes():
    size = msg(0, b"x" * 500).size
    book = make_book(max_queue_bytes=10 * size, max_total_bytes=3 * size)
    a, b = make_queue(book, "a"), make_queue(book, "b")
    a.put(msg(0, b"x" * 500))
    a.put(msg(1, b"x" * 500))
    b.put(msg(2, b"x" * 500))
    with pytest.raises(QueueFull, match=r"stomp\.max_total_queue_bytes") as full:
        b.put(msg(3, b"x" * 500))
    assert full.value.counter == "limit_total_queue_bytes"
    with pytest.raises(QueueFull, match=r"stomp\.max_total_queue_bytes"):
        make_queue(book, "c").put(msg(4, b"x" * 500))
    assert (a.bytes, b.bytes, book.bytes) == (2 * size, size, 3 * size)
    # Consuming one message of a makes room for one more anywhere.
    a.add(FakeConsumer(room=1))
    assert book.bytes == 2 * size
    b.put(msg(3, b"x" * 500))
    assert book.bytes == 3 * size


def test_held_messages_count_until_acknowledged_and_put_back_ones_are_never_refused():
    size = msg(0).size
    book = make_book(max_queue_bytes=2 * size)
    queue = make_queue(book)
    holder = FakeConsumer(acknowledges=True)
    queue.add(holder)
    queue.put(msg(0))
    queue.put(msg(1))
    assert bodies(holder) == [b"0", b"1"]
    assert not queue.pending
    assert queue.bytes == book.bytes == 2 * size  # delivered, not yet acknowledged
    with pytest.raises(QueueFull, match=r"stomp\.max_queue_bytes"):
        queue.put(msg(2))
    queue.remove(holder)
    queue.put_back(holder.got)  # accepted once: back in line, whatever the budget
    assert [m.message_id for m in queue.pending] == ["m0", "m1"]
    assert book.bytes == 2 * size
    taker = FakeConsumer(acknowledges=True)
    queue.add(taker)
    queue.settle(taker.got[:1])
    assert book.bytes == size
    queue.settle(taker.got[1:])
    assert queue.bytes == book.bytes == 0


def test_auto_consumers_free_the_bytes_on_delivery():
    book = make_book()
    queue = make_queue(book)
    queue.add(FakeConsumer())
    for i in range(5):
        queue.put(msg(i, b"y" * 100))
    assert queue.bytes == book.bytes == 0


# --------------------------------------------------------------------- deadlines


def test_a_message_past_its_deadline_is_not_delivered_and_its_bytes_are_freed():
    clock = Clock()
    book = make_book(clock=clock)
    queue = make_queue(book)
    queue.put(msg(0, expires=clock.now + 5))
    queue.put(msg(1, expires=clock.now + 50))
    clock.now += 10
    consumer = FakeConsumer()
    queue.add(consumer)
    assert bodies(consumer) == [b"1"]
    assert book.bytes == 0


def test_the_sweep_drops_expired_messages_anywhere_in_line_and_forgets_idle_queues():
    clock = Clock()
    book = make_book(clock=clock)
    late = make_queue(book, "late")
    late.put(msg(0, expires=clock.now + 100))
    late.put(msg(1, expires=clock.now + 5))  # behind one that lives longer
    soon = make_queue(book, "soon")
    soon.put(msg(2, b"z" * 1000, expires=clock.now + 5))
    total = book.bytes
    assert book.sweep() == 0  # nothing due yet
    clock.now += 10
    freed = book.sweep()
    assert freed == msg(1).size + msg(2, b"z" * 1000).size
    assert book.bytes == total - freed == late.bytes == msg(0).size
    assert [m.message_id for m in late.pending] == ["m0"]
    assert book.find("soon") is None  # empty: forgotten
    assert book.find("late") is late


def test_a_sweep_looks_at_a_bounded_number_of_messages_and_the_next_goes_on():
    clock = Clock()
    book = make_book(clock=clock)
    for q in range(10):
        queue = make_queue(book, f"q{q}")
        for i in range(10):
            queue.put(msg(i, expires=clock.now + 1))
    clock.now += 2
    book.sweep(budget=30)  # about three queues of ten
    left = len(book)
    assert 6 <= left <= 8
    while len(book):
        book.sweep(budget=30)
    assert book.bytes == 0


def test_a_full_queue_drops_what_is_due_before_refusing():
    clock = Clock()
    size = msg(0).size
    queue = make_queue(make_book(max_queue_bytes=2 * size, clock=clock))
    queue.put(msg(0, expires=clock.now + 1))
    queue.put(msg(1))
    clock.now += 2
    queue.put(msg(2))
    assert [m.message_id for m in queue.pending] == ["m1", "m2"]


def test_a_message_already_past_its_deadline_is_taken_and_dropped():
    clock = Clock()
    book = make_book(clock=clock)
    queue = make_queue(book)
    queue.put(msg(0, expires=clock.now))
    assert not queue.pending
    assert book.bytes == 0


def test_put_back_drops_messages_past_their_deadline():
    clock = Clock()
    book = make_book(clock=clock)
    queue = make_queue(book)
    holder = FakeConsumer(acknowledges=True)
    queue.add(holder)
    queue.put(msg(0, expires=clock.now + 1))
    queue.put(msg(1, expires=clock.now + 100))
    clock.now += 2
    queue.remove(holder)
    queue.put_back(holder.got)
    assert [m.message_id for m in queue.pending] == ["m1"]
    assert book.bytes == queue.bytes == msg(1).size


def test_deadlines_from_the_ttl_and_the_expires_and_expiration_headers():
    clock, wall = Clock(500.0), Clock(1_700_000_000.0)
    book = make_book(ttl=60.0, clock=clock, wall=wall)
    assert book.deadline(None, None) == 560.0
    assert book.deadline("0", None) == 560.0  # ActiveMQ: 0 = no deadline of its own
    in_10_s = str(int((wall.now + 10) * 1000))
    assert book.deadline(in_10_s, None) == pytest.approx(510.0)
    in_1_h = str(int((wall.now + 3600) * 1000))
    assert book.deadline(in_1_h, None) == 560.0  # a header shortens, never lengthens
    assert book.deadline(None, "2500") == 502.5  # RabbitMQ: ms to live
    assert book.deadline(in_10_s, "2500") == 502.5
    for bad in ("-1", "soon", "1e3", "\u00b2", "9" * 19, ""):
        with pytest.raises(ValueError, match="expires"):
            book.deadline(bad, None)
        with pytest.raises(ValueError, match="expiration"):
            book.deadline(None, bad)


def test_a_consumer_that_takes_at_once_gets_messages_whatever_the_budgets():
    size = msg(0).size
    book = make_book(max_queue_bytes=size, max_total_bytes=size)
    full = make_queue(book, "full")
    full.put(msg(0))  # the whole broker budget
    with pytest.raises(QueueFull, match=r"stomp\.max_total_queue_bytes"):
        make_queue(book, "other").put(msg(1))
    served = make_queue(book, "served")
    a, b = FakeConsumer(), FakeConsumer()
    served.add(a)
    served.add(b)
    for i in range(4):
        served.put(msg(i))  # handed over, never stored: nothing to refuse
    assert (bodies(a), bodies(b)) == ([b"0", b"2"], [b"1", b"3"])
    assert book.bytes == size
    # A consumer that holds what it takes until ACK holds bytes: the budget applies.
    held = make_queue(book, "held")
    held.add(FakeConsumer(acknowledges=True))
    with pytest.raises(QueueFull, match=r"stomp\.max_total_queue_bytes"):
        held.put(msg(5))


def test_each_refusal_names_its_budget_in_the_same_words():
    size = msg(0, b"x" * 100).size
    book = make_book(max_length=2, max_queue_bytes=3 * size, max_total_bytes=4 * size)
    a, b = make_queue(book, "a"), make_queue(book, "b")
    a.put(msg(0, b"x" * 100))
    a.put(msg(1, b"x" * 100))
    with pytest.raises(QueueFull) as full:
        a.put(msg(2, b"x" * 100))
    assert (full.value.counter, str(full.value)) == (
        "limit_queue_length",
        "queue 'a' holds 2 messages waiting for a consumer (stomp.max_queue_length)",
    )
    b.put(msg(3, b"x" * 100))
    with pytest.raises(QueueFull) as full:
        b.put(msg(4, b"x" * (2 * size)))
    big = msg(4, b"x" * (2 * size)).size
    assert (full.value.counter, str(full.value)) == (
        "limit_queue_bytes",
        f"queue 'b' holds {size} bytes and this message counts {big}: "
        f"a queue holds at most {3 * size} bytes (stomp.max_queue_bytes)",
    )
    b.put(msg(5, b"x" * 100))
    with pytest.raises(QueueFull) as full:
        make_queue(book, "c").put(msg(6, b"x" * 100))
    assert (full.value.counter, str(full.value)) == (
        "limit_total_queue_bytes",
        f"the broker's queues hold {4 * size} bytes and this message counts {size}: "
        f"all queues together hold at most {4 * size} bytes (stomp.max_total_queue_bytes)",
    )


def test_one_address_holds_at_most_its_share_and_others_still_send():
    size = msg(0, b"x" * 500).size
    book = make_book(max_client_bytes=3 * size)
    greedy, other = "198.51.100.7", "2001:db8::1"
    a, b = make_queue(book, "a"), make_queue(book, "b")
    a.put(msg(0, b"x" * 500, sender=greedy))
    a.put(msg(1, b"x" * 500, sender=greedy))
    b.put(msg(2, b"x" * 500, sender=greedy))  # the share spans queues
    assert book.shares.held(greedy) == 3 * size
    with pytest.raises(QueueFull) as full:
        b.put(msg(3, b"x" * 500, sender=greedy))
    assert (full.value.counter, str(full.value)) == (
        "limit_client_queue_bytes",
        f"the messages sent from 198.51.100.7 hold {3 * size} bytes and this message counts "
        f"{size}: the messages of one client address hold at most {3 * size} bytes "
        "(stomp.max_client_queue_bytes)",
    )
    assert book.shares.held(greedy) == book.bytes == 3 * size  # nothing accepted was dropped
    a.put(msg(4, b"x" * 500, sender=other))
    b.put(msg(5, b"x" * 500, sender=other))
    assert book.shares.held(other) == 2 * size
    assert book.bytes == 5 * size
    # The share is exact: a message one byte smaller than what is left fits.
    with pytest.raises(QueueFull, match=r"stomp\.max_client_queue_bytes"):
        a.put(msg(6, b"x" * 501, sender=other))
    a.put(msg(6, b"x" * 500, sender=other))
    assert book.shares.held(other) == 3 * size


def test_an_address_s_share_is_freed_as_its_messages_leave_and_then_forgotten():
    clock = Clock()
    size = msg(0, b"x" * 100).size
    book = make_book(max_client_bytes=2 * size, clock=clock)
    queue = make_queue(book)
    queue.put(msg(0, b"x" * 100))
    queue.put(msg(1, b"x" * 100, expires=clock.now + 5))
    with pytest.raises(QueueFull, match=r"stomp\.max_client_queue_bytes"):
        queue.put(msg(2, b"x" * 100))
    # Taken unacknowledged: it still counts; acknowledged: it is free.
    holder = FakeConsumer(room=1, acknowledges=True)
    queue.add(holder)
    assert book.shares.held(CLIENT) == 2 * size
    queue.settle(holder.got)
    assert book.shares.held(CLIENT) == size
    queue.remove(holder)
    queue.put(msg(2, b"x" * 100))
    assert book.shares.held(CLIENT) == 2 * size
    # Given back by a consumer: still counted, never refused.
    taker = FakeConsumer(room=1, acknowledges=True)
    queue.add(taker)
    queue.remove(taker)
    queue.put_back(taker.got)
    assert book.shares.held(CLIENT) == 2 * size
    # Expired: free.
    clock.now += 10
    queue.expire(clock.now)
    assert book.shares.held(CLIENT) == size
    # Consumed by an auto consumer: free, and the address is forgotten.
    assert CLIENT in book.shares
    queue.add(FakeConsumer())
    assert book.shares.held(CLIENT) == book.bytes == 0
    assert CLIENT not in book.shares
    assert len(book.shares) == 0
    # A message a consumer takes at once never counted, nor made an entry.
    queue.put(msg(3, b"x" * 100))
    assert len(book.shares) == 0


def test_every_way_out_of_the_queues_forgets_an_address_left_with_nothing():
    clock = Clock()
    book = make_book(max_client_bytes=3 * msg(0).size, clock=clock)
    acked, swept, given_back = "192.0.2.10", "192.0.2.11", "192.0.2.12"
    held = make_queue(book, "held")
    held.put(msg(0, sender=acked))
    make_queue(book, "swept").put(msg(1, sender=swept, expires=clock.now + 1))
    back = make_queue(book, "back")
    back.put(msg(2, sender=given_back, expires=clock.now + 1))
    assert len(book.shares) == 3
    # Acknowledged.
    holder = FakeConsumer(acknowledges=True)
    held.add(holder)
    assert acked in book.shares
    held.settle(holder.got)
    assert acked not in book.shares
    # Held by a consumer past its deadline, then given back: dropped.
    keeper = FakeConsumer(acknowledges=True)
    back.add(keeper)
    back.remove(keeper)
    clock.now += 2
    back.put_back(keeper.got)
    assert given_back not in book.shares
    # Expired while waiting, found by the sweep.
    assert swept in book.shares
    book.sweep()
    assert len(book.shares) == 0
    assert book.bytes == 0
    # Each address may fill its whole share again.
    for n, address in enumerate((acked, swept, given_back)):
        for i in range(3):
            make_queue(book, f"again-{n}").put(msg(i, sender=address))
    assert len(book.shares) == 3
