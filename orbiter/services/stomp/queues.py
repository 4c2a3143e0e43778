"""STOMP queues without I/O: each message goes to one consumer, round-robin.

A :class:`MessageQueue` holds messages that wait for a consumer with room
(bounded by ``limit``: past it :meth:`MessageQueue.put` refuses), and hands
each to the next consumer in turn that has room. Consumers (subscriptions)
hold what they took until it is acknowledged; what they give back (NACK,
unsubscribe, disconnect) goes to the front of the queue, marked redelivered.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from orbiter.protocol.stomp import Header


@dataclass(slots=True)
class QueuedMessage:
    message_id: str
    #: The SEND's headers that go on to the consumer (content-type, user headers).
    headers: tuple[Header, ...]
    body: bytes
    redelivered: bool = False


class Consumer(Protocol):
    def has_room(self) -> bool:
        """True if the consumer can take another message now."""

    def offer(self, message: QueuedMessage) -> bool:
        """Take ``message`` (queue it for the client); False if it could not."""


class MessageQueue:
    __slots__ = ("_next", "consumers", "limit", "name", "pending")

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self.pending: deque[QueuedMessage] = deque()
        self.consumers: list[Consumer] = []
        self._next = 0

    @property
    def idle(self) -> bool:
        return not self.pending and not self.consumers

    def put(self, message: QueuedMessage) -> bool:
        """Queue ``message`` and dispatch; False (nothing queued) when the queue is full."""
        if len(self.pending) >= self.limit:
            return False
        self.pending.append(message)
        self.dispatch()
        return True

    def put_back(self, messages: Iterable[QueuedMessage]) -> None:
        """Messages a consumer held but did not consume: first in line again, redelivered.

        They were accepted once, so the limit does not apply to them.
        """
        for message in reversed(list(messages)):
            message.redelivered = True
            self.pending.appendleft(message)
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
        """Hand waiting messages to consumers with room, in turn."""
        while self.pending and self.consumers:
            count = len(self.consumers)
            for step in range(count):
                consumer = self.consumers[(self._next + step) % count]
                if consumer.has_room():
                    message = self.pending.popleft()
                    self._next = (self._next + step + 1) % count
                    if not consumer.offer(message):
                        self.pending.appendleft(message)
                    break
            else:
                return


class QueueBook:
    """The queues of one broker, by name; a queue with no message and no consumer is dropped."""

    def __init__(self, limit: int, max_queues: int = 10_000) -> None:
        self.limit = limit
        self.max_queues = max_queues
        self._queues: dict[str, MessageQueue] = {}

    def get(self, name: str) -> MessageQueue | None:
        """The queue ``name``, created if need be; None if that would pass ``max_queues``."""
        queue = self._queues.get(name)
        if queue is None:
            if len(self._queues) >= self.max_queues:
                return None
            queue = self._queues[name] = MessageQueue(name, self.limit)
        return queue

    def find(self, name: str) -> MessageQueue | None:
        return self._queues.get(name)

    def tidy(self, queue: MessageQueue) -> None:
        if queue.idle and self._queues.get(queue.name) is queue:
            del self._queues[queue.name]

    def __len__(self) -> int:
        return len(self._queues)
