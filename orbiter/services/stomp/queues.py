"""STOMP queues without I/O: each message goes to one consumer, round-robin, within budgets.

A :class:`MessageQueue` holds messages that wait for a consumer with room
and hands each to the next consumer in turn that has room. Consumers
(subscriptions) hold what they took until it is acknowledged; what they give
back (NACK, unsubscribe, disconnect) goes to the front of the queue, marked
redelivered.

A :class:`QueueBook` holds the queues of one broker and their budgets: the
messages waiting in one queue (``stomp.max_queue_length``), the bytes one
queue holds (``stomp.max_queue_bytes``), the bytes all queues hold
(``stomp.max_total_queue_bytes``) and the bytes of the messages one client
address sent (its share, :mod:`.shares`, ``stomp.max_client_queue_bytes``),
so that one client cannot take the whole total from the others, however many
connections it opens one after another or at once. A message's
bytes (:attr:`QueuedMessage.size`) count from its SEND until it is consumed:
while it waits, and while a consumer holds it unacknowledged; one that a
consumer takes at once is never stored and counts nothing. A SEND past a
budget is refused (:class:`QueueFull`); an accepted message is never dropped
to make room.

Every message has a deadline (``stomp.message_ttl``, shortened by its
``expires`` or ``expiration`` header: :meth:`QueueBook.deadline`). A message
past it is never delivered; :meth:`QueueBook.sweep`, run now and then by the
broker, drops such messages and frees their bytes, a bounded number of
messages per call, and forgets queues left with no message and no consumer.

A *persistent* message (:mod:`.durable_queue`) is stored before it is queued:
:meth:`MessageQueue.reserve` counts its bytes in every budget (or refuses it)
while its row is committed, then :meth:`MessageQueue.admit` queues it (or
:meth:`MessageQueue.unreserve` gives the bytes back if the write failed).
When it leaves the queues, its book's ``stored_gone`` is told, to delete
its row.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from orbiter.protocol.stomp import Header
from orbiter.services.stomp.shares import ClientShares

#: What a message costs besides its body and headers (the objects that hold it), in bytes.
MESSAGE_OVERHEAD = 256
#: What each header costs besides its name and value (its tuple and two strings), in bytes.
HEADER_OVERHEAD = 160
#: Messages one :meth:`QueueBook.sweep` looks at, about (each queue it visits counts one more).
SWEEP_BUDGET = 20_000
#: The longest ``expires``/``expiration`` number read (ms): more digits are refused.
_MAX_DIGITS = 18


def _text_size(text: str) -> int:
    """Bytes a header string is counted as: its length, or four bytes a character if not ASCII."""
    return len(text) if text.isascii() else 4 * len(text)


@dataclass(slots=True)
class QueuedMessage:
    message_id: str
    #: The SEND's headers that go on to the consumer (content-type, user headers).
    headers: tuple[Header, ...]
    body: bytes
    #: When the message is dropped if no consumer has taken it (the book's clock, seconds).
    expires: float = math.inf
    redelivered: bool = False
    #: The bytes it counts in its queue's budgets (body, headers and overhead).
    size: int = field(init=False)
    #: The address of the client that sent it, whose share its bytes count in.
    sender: str = field(kw_only=True)
    #: Its row in the queue file (``persistent:true``); 0 if it is kept in memory only.
    key: int = field(default=0, kw_only=True)

    def __post_init__(self) -> None:
        self.size = (
            MESSAGE_OVERHEAD
            + len(self.body)
            + sum(HEADER_OVERHEAD + _text_size(n) + _text_size(v) for n, v in self.headers)
        )


class QueueFull(Exception):
    """A message no queue took: its text names the limit and its config key."""

    def __init__(self, counter: str, detail: str) -> None:
        super().__init__(detail)
        #: The name the refusal is counted under (``GET /api/stats``).
        self.counter = counter


class Consumer(Protocol):
    @property
    def acknowledges(self) -> bool:
        """True if the consumer holds what it takes until it ACKs (else it is consumed)."""

    def has_room(self) -> bool:
        """True if the consumer can take another message now."""

    def offer(self, message: QueuedMessage) -> bool:
        """Take ``message`` (queue it for the client); False if it could not."""


class MessageQueue:
    __slots__ = (
        "_book",
        "_next",
        "bytes",
        "consumers",
        "earliest",
        "name",
        "pending",
        "reserved",
    )

    def __init__(self, name: str, book: QueueBook) -> None:
        self.name = name
        self._book = book
        self.pending: deque[QueuedMessage] = deque()
        self.consumers: list[Consumer] = []
        #: Bytes of the messages waiting here and of those consumers hold unacknowledged.
        self.bytes = 0
        #: No waiting message expires before this (it may be earlier than the first that does).
        self.earliest = math.inf
        self._next = 0
        #: Messages whose bytes are counted while they are being stored (not yet waiting).
        self.reserved = 0

    @property
    def idle(self) -> bool:
        return not self.pending and not self.consumers and not self.reserved

    def put(self, message: QueuedMessage) -> None:
        """Queue ``message`` and dispatch; :class:`QueueFull` (nothing queued) past a budget.

        A message that no other waits before, and that the next consumer in turn
        takes at once without holding it (``ack: auto``), is never stored, so no
        budget refuses it. A message whose deadline has already passed is taken
        and dropped.
        """
        book = self._book
        now = book.clock()
        if message.expires <= now:
            return
        if not self.pending and self.consumers and self._hand_over(message):
            return
        if self.earliest <= now and self._refusal(message) is not None:
            self.expire(now)  # what is due makes room before anything is refused
        refusal = self._refusal(message)
        if refusal is not None:
            raise refusal
        self.pending.append(message)
        self.bytes += message.size
        book.bytes += message.size
        book.shares.take(message.sender, message.size)
        if message.expires < self.earliest:
            self.earliest = message.expires
        self.dispatch()

    def reserve(self, message: QueuedMessage) -> None:
        """Count a message that is being stored in every budget; :class:`QueueFull` (nothing
        counted) past one. :meth:`admit` or :meth:`unreserve` must follow."""
        now = self._book.clock()
        if self.earliest <= now and self._refusal(message) is not None:
            self.expire(now)
        refusal = self._refusal(message)
        if refusal is not None:
            raise refusal
        self._count(message)
        self.reserved += 1

    def admit(self, message: QueuedMessage) -> None:
        """A reserved message was stored: it waits in the queue (its bytes already count)."""
        self.reserved -= 1
        if message.expires <= self._book.clock():
            self._release(message)
            return
        self.pending.append(message)
        if message.expires < self.earliest:
            self.earliest = message.expires
        self.dispatch()

    def unreserve(self, message: QueuedMessage) -> None:
        """A reserved message could not be stored: its bytes are free (it has no row)."""
        self.reserved -= 1
        self.bytes -= message.size
        self._book.bytes -= message.size
        self._book.shares.release(message.sender, message.size)

    def _count(self, message: QueuedMessage) -> None:
        self.bytes += message.size
        self._book.bytes += message.size
        self._book.shares.take(message.sender, message.size)

    def _hand_over(self, message: QueuedMessage) -> bool:
        """Give ``message`` to the next consumer in turn with room if it does not hold it."""
        consumers = self.consumers
        count = len(consumers)
        for step in range(count):
            consumer = consumers[(self._next + step) % count]
            if consumer.has_room():
                if consumer.acknowledges or not consumer.offer(message):
                    return False
                self._next = (self._next + step + 1) % count
                return True
        return False

    def _refusal(self, message: QueuedMessage) -> QueueFull | None:
        book = self._book
        if len(self.pending) + self.reserved >= book.max_length:
            return _full(
                "max_queue_length",
                f"queue {self.name!r} holds {book.max_length} messages waiting for a consumer",
            )
        size = message.size
        return (
            _over_bytes(
                "max_queue_bytes",
                size,
                holder=f"queue {self.name!r} holds",
                held=self.bytes,
                scope="a queue holds",
                limit=book.max_queue_bytes,
            )
            or _over_bytes(
                "max_client_queue_bytes",
                size,
                holder=f"the messages sent from {message.sender} hold",
                held=book.shares.held(message.sender),
                scope="the messages of one client address hold",
                limit=book.max_client_bytes,
            )
            or _over_bytes(
                "max_total_queue_bytes",
                size,
                holder="the broker's queues hold",
                held=book.bytes,
                scope="all queues together hold",
                limit=book.max_total_bytes,
            )
        )

    def put_back(self, messages: Iterable[QueuedMessage]) -> None:
        """Messages a consumer held but did not consume: first in line again, redelivered.

        They were accepted once (their bytes still count), so no budget refuses
        them; those past their deadline are dropped.
        """
        now = self._book.clock()
        for message in reversed(list(messages)):
            if message.expires <= now:
                self._release(message)
                continue
            message.redelivered = True
            self.pending.appendleft(message)
            if message.expires < self.earliest:
                self.earliest = message.expires
        self.dispatch()

    def settle(self, messages: Iterable[QueuedMessage]) -> None:
        """Messages a consumer acknowledged: consumed, their bytes free; then dispatch."""
        for message in messages:
            self._release(message)
        self.dispatch()

    def add(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)
        self.dispatch()

    def remove(self, consumer: Consumer) -> None:
        if consumer in self.consumers:
            index = self.consumers.index(consumer)
            del self.consumers[index]
            if index < self._next:
                self._next -= 1

    def dispatch(self) -> None:
        """Hand waiting messages to consumers with room, in turn; drop those past their time."""
        pending = self.pending
        if not pending or not self.consumers:
            return
        now = self._book.clock()
        refused = 0
        while pending and self.consumers:
            message = pending[0]
            if message.expires <= now:
                pending.popleft()
                self._release(message)
                continue
            consumers = self.consumers
            count = len(consumers)
            for step in range(count):
                consumer = consumers[(self._next + step) % count]
                if consumer.has_room():
                    pending.popleft()
                    self._next = (self._next + step + 1) % count
                    if not consumer.offer(message):
                        pending.appendleft(message)
                        refused += 1
                        if refused >= count:
                            return  # every consumer turned it down: wait for room
                    elif not consumer.acknowledges:
                        self._release(message)
                    break
            else:
                return

    def expire(self, now: float) -> int:
        """Drop the waiting messages past their deadline; how many messages were looked at."""
        if self.earliest > now:
            return 0
        pending = self.pending
        looked = len(pending)
        earliest = math.inf
        for _ in range(looked):
            message = pending.popleft()
            if message.expires <= now:
                self._release(message)
            else:
                pending.append(message)
                earliest = min(earliest, message.expires)
        self.earliest = earliest
        return looked

    def _release(self, message: QueuedMessage) -> None:
        """``message`` left the queue (consumed, acknowledged or expired): its bytes are free,
        and its row, if it has one, goes."""
        book = self._book
        self.bytes -= message.size
        book.bytes -= message.size
        book.shares.release(message.sender, message.size)
        if message.key and book.stored_gone is not None:
            book.stored_gone(message)


class QueueBook:
    """The queues of one broker, by name, and their budgets.

    A queue with no message and no consumer is forgotten (:meth:`tidy`).
    ``clock`` (seconds, monotonic) times deadlines; ``wall`` (epoch seconds)
    reads ``expires`` headers.
    """

    def __init__(
        self,
        *,
        max_length: int,
        max_queues: int,
        max_queue_bytes: int,
        max_total_bytes: int,
        max_client_bytes: int,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.max_length = max_length
        self.max_queues = max_queues
        self.max_queue_bytes = max_queue_bytes
        self.max_total_bytes = max_total_bytes
        self.max_client_bytes = max_client_bytes
        self.ttl = ttl
        self.clock = clock
        self.wall = wall
        #: Bytes all queues hold (the sum of their :attr:`MessageQueue.bytes`).
        self.bytes = 0
        #: The same bytes by the address that sent them (at most ``max_client_bytes`` each).
        self.shares = ClientShares()
        self._queues: dict[str, MessageQueue] = {}
        #: Queues the current round of sweeps has still to visit.
        self._to_sweep: list[MessageQueue] = []
        #: Told of each stored (persistent) message that left the queues, to delete its row.
        self.stored_gone: Callable[[QueuedMessage], None] | None = None

    def get(self, name: str) -> MessageQueue | None:
        """The queue ``name``, created if need be; None if that would pass ``max_queues``."""
        queue = self._queues.get(name)
        if queue is None:
            if len(self._queues) >= self.max_queues:
                return None
            queue = self._queues[name] = MessageQueue(name, self)
        return queue

    def find(self, name: str) -> MessageQueue | None:
        return self._queues.get(name)

    def tidy(self, queue: MessageQueue) -> None:
        if queue.idle and self._queues.get(queue.name) is queue:
            del self._queues[queue.name]

    def __len__(self) -> int:
        return len(self._queues)

    def deadline(self, expires: str | None, expiration: str | None) -> float:
        """When a message sent now with these headers is dropped unconsumed (``clock`` time).

        ``expires`` is a time in milliseconds since the epoch (ActiveMQ's and
        Artemis's header; ``0`` = no deadline of its own), ``expiration`` a
        time to live in milliseconds (RabbitMQ's). The earliest of them and
        ``stomp.message_ttl`` wins: a header can shorten a message's life, not
        lengthen it. ValueError if a header is not a number of milliseconds.
        """
        now = self.clock()
        deadline = now + self.ttl
        if expires is not None:
            at = _milliseconds("expires", expires, "milliseconds since the epoch; 0 = none")
            if at:
                deadline = min(deadline, now + at / 1000 - self.wall())
        if expiration is not None:
            ttl = _milliseconds("expiration", expiration, "milliseconds to live")
            deadline = min(deadline, now + ttl / 1000)
        return deadline

    def sweep(self, budget: int = SWEEP_BUDGET) -> int:
        """Drop messages past their deadline, queue after queue, and forget idle queues.

        Looks at about ``budget`` messages, then stops; the next call goes on
        where this one stopped. Returns the bytes freed.
        """
        now = self.clock()
        before = self.bytes
        if not self._to_sweep:
            self._to_sweep = list(self._queues.values())
        looked = 0
        while self._to_sweep and looked < budget:
            queue = self._to_sweep.pop()
            looked += 1 + queue.expire(now)
            self.tidy(queue)
        return before - self.bytes


def _full(key: str, detail: str) -> QueueFull:
    """The refusal of a SEND past ``stomp.<key>``: counted as ``limit_<key less max_>``."""
    return QueueFull("limit_" + key.removeprefix("max_"), f"{detail} (stomp.{key})")


def _over_bytes(
    key: str, size: int, *, holder: str, held: int, scope: str, limit: int
) -> QueueFull | None:
    """The refusal of a message of ``size`` bytes where ``held`` of ``limit`` are taken;
    None if it fits. ``holder`` and ``scope`` name what holds the bytes, with the verb."""
    if held + size <= limit:
        return None
    return _full(
        key,
        f"{holder} {held} bytes and this message counts {size}: {scope} at most {limit} bytes",
    )


def _milliseconds(name: str, value: str, meaning: str) -> int:
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_DIGITS:
        raise ValueError(f"header {name} {value[:40]!r} is not a whole number of {meaning}")
    return int(text)
