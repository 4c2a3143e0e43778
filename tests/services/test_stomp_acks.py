"""STOMP acknowledgements without I/O: message ids, ``client`` and ``client-individual``
modes, NACK back to the queue, topics' newest ``max_unacked``, and ids that are refused."""

from __future__ import annotations

import pytest

from orbiter.protocol.stomp import Frame
from orbiter.services.stomp.acks import Acks
from orbiter.services.stomp.errors import StompError
from orbiter.services.stomp.queues import MessageQueue, QueueBook, QueuedMessage
from orbiter.services.stomp.subscription import Subscription


class Output:
    """A connection with room for every queue message, that keeps what it is sent."""

    def __init__(self) -> None:
        self.sent: list[QueuedMessage] = []

    def can_take_queued(self) -> bool:
        return True

    def queued(self, sub: Subscription, message: QueuedMessage) -> bool:
        self.sent.append(message)
        return True


def make_book() -> QueueBook:
    big = 1 << 40
    return QueueBook(
        max_length=100,
        max_queues=10,
        max_queue_bytes=big,
        max_total_bytes=big,
        max_client_bytes=big,
        ttl=3600.0,
    )


def subscription(kind: str, ack: str, version: str = "1.2", target: str = "q") -> Subscription:
    return Subscription(Output(), "s1", f"/{kind}/{target}", kind, target, ack, version, 3)


def queued(book: QueueBook, count: int) -> tuple[MessageQueue, list[QueuedMessage]]:
    """A queue ``q`` of ``book`` holding ``count`` messages (counted in its bytes)."""
    queue = book.get("q")
    assert queue is not None
    messages = [QueuedMessage(f"m{n}", (), b"x", sender="192.0.2.1") for n in range(count)]
    for message in messages:
        queue.put(message)
    queue.pending.clear()  # as taken by a consumer: held, still counted
    return queue, messages


def ack(message_id: str, command: str = "ACK", **headers: str) -> Frame:
    return Frame(command, [("id", message_id), *headers.items()])


def test_message_ids_are_the_session_s_and_numbered_in_order():
    acks = Acks("7", max_unacked=3)
    assert [acks.next_id() for _ in range(3)] == ["7-1", "7-2", "7-3"]


def test_client_mode_acks_the_earlier_messages_too_and_frees_their_bytes():
    book = make_book()
    queue, messages = queued(book, 3)
    acks = Acks("7", max_unacked=3)
    sub = subscription("queue", "client")
    ids = [acks.next_id() for _ in messages]
    for message_id, message in zip(ids, messages, strict=True):
        acks.hold(sub, message_id, message)
    acks.acknowledge(ack(ids[1]), "1.2", book, nack=False)
    assert list(sub.unacked) == [ids[2]]
    assert queue.bytes == book.bytes == messages[2].size
    # Acknowledged once: a second ACK of it is ignored, not refused.
    acks.acknowledge(ack(ids[0]), "1.2", book, nack=False)
    assert list(sub.unacked) == [ids[2]]


def test_client_individual_mode_acks_one_and_nack_puts_it_back_first_redelivered():
    book = make_book()
    queue, messages = queued(book, 3)
    acks = Acks("7", max_unacked=3)
    sub = subscription("queue", "client-individual")
    ids = [acks.next_id() for _ in messages]
    for message_id, message in zip(ids, messages, strict=True):
        acks.hold(sub, message_id, message)
    acks.acknowledge(ack(ids[1]), "1.2", book, nack=False)
    assert list(sub.unacked) == [ids[0], ids[2]]
    acks.acknowledge(ack(ids[2], "NACK"), "1.2", book, nack=True)
    assert list(sub.unacked) == [ids[0]]
    assert [m.message_id for m in queue.pending] == ["m2"]
    assert queue.pending[0].redelivered
    assert queue.bytes == messages[0].size + messages[2].size


def test_a_topic_subscription_keeps_its_newest_unacked_and_old_ones_ack_quietly():
    book = make_book()
    acks = Acks("7", max_unacked=3)
    sub = subscription("topic", "client-individual", target="chat")
    ids = [acks.next_id() for _ in range(5)]
    for message_id in ids:
        acks.hold(sub, message_id, None)
    assert list(sub.unacked) == ids[2:]
    acks.acknowledge(ack(ids[0]), "1.2", book, nack=False)  # sent, no longer held
    acks.acknowledge(ack(ids[3]), "1.2", book, nack=False)
    assert list(sub.unacked) == [ids[2], ids[4]]


@pytest.mark.parametrize("message_id", ["7-6", "7-0", "8-1", "7-x", "7-" + "9" * 19, "", "7"])
def test_ids_this_connection_never_sent_are_refused(message_id):
    acks = Acks("7", max_unacked=3)
    for _ in range(5):
        acks.next_id()
    with pytest.raises(StompError) as refused:
        acks.acknowledge(ack(message_id), "1.2", make_book(), nack=False)
    expected = "missing header" if not message_id else "unknown message"
    assert refused.value.message == expected


def test_the_header_and_subscription_rules_follow_the_version():
    book = make_book()
    acks = Acks("7", max_unacked=3)
    sub = subscription("topic", "client", version="1.1", target="chat")
    message_id = acks.next_id()
    acks.hold(sub, message_id, None)
    # 1.0 and 1.1 name the message with message-id, 1.2 with id.
    with pytest.raises(StompError, match="missing header"):
        acks.acknowledge(ack(message_id), "1.1", book, nack=False)
    with pytest.raises(StompError, match="unknown message"):
        acks.acknowledge(
            Frame("ACK", [("message-id", message_id), ("subscription", "other")]),
            "1.1",
            book,
            nack=False,
        )
    acks.acknowledge(
        Frame("ACK", [("message-id", message_id), ("subscription", "s1")]), "1.1", book, nack=False
    )
    assert not sub.unacked


def test_forget_gives_the_held_queue_messages_and_drops_their_ids():
    book = make_book()
    _, messages = queued(book, 2)
    acks = Acks("7", max_unacked=3)
    sub = subscription("queue", "client")
    ids = [acks.next_id() for _ in messages]
    for message_id, message in zip(ids, messages, strict=True):
        acks.hold(sub, message_id, message)
    assert acks.forget(sub) == messages
    assert not sub.unacked
    acks.acknowledge(ack(ids[0]), "1.2", book, nack=False)  # sent here: ignored
