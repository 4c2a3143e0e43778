"""STOMP queues without I/O: bounds, round-robin, room, redelivery order."""

from __future__ import annotations

from orbiter.services.stomp.queues import MessageQueue, QueueBook, QueuedMessage


class FakeConsumer:
    """A consumer with a fixed capacity (queues need only has_room and offer)."""

    def __init__(self, room: int = 1_000, accept: bool = True) -> None:
        self.room = room
        self.accept = accept
        self.got: list[QueuedMessage] = []

    def has_room(self) -> bool:
        return self.accept and len(self.got) < self.room

    def offer(self, message: QueuedMessage) -> bool:
        if not self.accept:
            return False
        self.got.append(message)
        return True


def msg(n: int) -> QueuedMessage:
    return QueuedMessage(f"m{n}", (), str(n).encode())


def bodies(consumer: FakeConsumer) -> list[bytes]:
    return [m.body for m in consumer.got]


def test_messages_wait_for_a_consumer_and_are_bounded():
    queue = MessageQueue("q", limit=3)
    assert all(queue.put(msg(i)) for i in range(3))
    assert not queue.put(msg(3))
    consumer = FakeConsumer()
    queue.add(consumer)
    assert bodies(consumer) == [b"0", b"1", b"2"]
    assert queue.put(msg(3))
    assert bodies(consumer)[-1] == b"3"


def test_round_robin_skips_consumers_without_room():
    queue = MessageQueue("q", limit=100)
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
    queue = MessageQueue("q", limit=10)
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
    queue = MessageQueue("q", limit=2)
    queue.put(msg(0))
    queue.put(msg(1))
    queue.put_back([msg(8), msg(9)])
    assert [m.message_id for m in queue.pending] == ["m8", "m9", "m0", "m1"]
    assert [m.redelivered for m in queue.pending] == [True, True, False, False]


def test_a_refused_offer_keeps_the_message():
    queue = MessageQueue("q", limit=10)
    refusing = FakeConsumer()
    queue.add(refusing)
    refusing.accept = False
    queue.put(msg(0))
    assert [m.message_id for m in queue.pending] == ["m0"]
    taker = FakeConsumer()
    queue.add(taker)
    assert bodies(taker) == [b"0"]


def test_removed_consumers_get_nothing_and_idle_queues_are_dropped():
    book = QueueBook(limit=10)
    queue = book.get("q")
    assert queue is not None
    consumer = FakeConsumer()
    queue.add(consumer)
    queue.remove(consumer)
    queue.put(msg(0))
    assert consumer.got == []
    book.tidy(queue)
    assert len(book) == 1
    queue.pending.clear()
    book.tidy(queue)
    assert len(book) == 0
    assert book.find("q") is None


def test_the_number_of_queues_is_bounded():
    book = QueueBook(limit=10, max_queues=2)
    assert book.get("a") is not None
    assert book.get("b") is not None
    assert book.get("c") is None
    assert book.get("a") is not None  # an existing queue is always found
