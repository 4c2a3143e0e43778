"""The bounded queue of encoded messages between a session and its transport.

Fan-out appends to it without awaiting. A transport either pulls (``take``
waits and returns everything queued, to be written as one batch) or, like
the WebSocket adapter, attaches a :class:`Sink` and is pushed to: messages
queued by ``put`` are handed over once per event-loop iteration (by the
node's :class:`Flusher`, so a burst becomes one write), and a
:class:`SharedBatch` of publications arriving at an empty outbox goes
straight to the sink, which writes the bytes framed once for every
subscriber. When the bytes queued (plus, pushed, those the transport has
not sent yet) would pass the limit, the outbox refuses, and the session
closes the connection as a slow consumer instead of growing without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from orbiter.services.shared_batch import SharedBatch


class Sink(Protocol):
    """A transport that is pushed to instead of calling :meth:`Outbox.take`."""

    def backlog(self) -> int:
        """Bytes written but not yet sent by the transport."""

    def write(self, messages: list[bytes]) -> None:
        """Write messages queued one by one (replies, pushes)."""

    def write_batch(self, batch: SharedBatch) -> None:
        """Write a shared batch of publications."""


class Flusher:
    """Hands each pushed outbox's queued messages to its sink, once per loop iteration.

    One per node. With ``delay`` > 0 the hand-over waits that many seconds
    after the first message, so that more arrive to be written together.
    """

    __slots__ = ("_delay", "_dirty", "_scheduled")

    def __init__(self, delay: float = 0.0) -> None:
        self._delay = delay
        self._dirty: list[Outbox] = []
        self._scheduled = False

    def mark(self, outbox: Outbox) -> None:
        self._dirty.append(outbox)
        if not self._scheduled:
            self._scheduled = True
            loop = asyncio.get_running_loop()
            if self._delay > 0:
                loop.call_later(self._delay, self.flush)
            else:
                loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for outbox in dirty:
            outbox.push()


class Outbox:
    __slots__ = (
        "_closed",
        "_flusher",
        "_items",
        "_limit",
        "_marked",
        "_on_close",
        "_sink",
        "_size",
        "_waiter",
    )

    def __init__(self, limit: int) -> None:
        self._items: list[bytes] = []
        self._size = 0
        self._limit = limit
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._sink: Sink | None = None
        self._flusher: Flusher | None = None
        self._marked = False
        self._on_close: Callable[[], None] | None = None

    def attach(self, sink: Sink, flusher: Flusher, on_close: Callable[[], None]) -> None:
        """Push to ``sink`` from now on (``take`` is then not used).

        ``on_close`` is called once when the outbox is closed, after what
        was queued (unless discarded) has been pushed.
        """
        self._sink = sink
        self._flusher = flusher
        self._on_close = on_close
        if self._closed:
            self.push()
            on_close()
        elif self._items:
            self._mark()

    def put(self, message: bytes, *, force: bool = False) -> bool:
        """Queue ``message``; False (and nothing queued) if the limit would be passed.

        ``force`` queues it whatever the limit: for a reply the client asked for
        (a recovery may be larger than the limit), when :attr:`over_limit` is False.
        """
        if self._closed:
            return True
        size = self._size + len(message)
        sink = self._sink
        if not force and (
            size > self._limit or (sink is not None and size + sink.backlog() > self._limit)
        ):
            return False
        self._items.append(message)
        self._size = size
        if sink is not None:
            if not self._marked:
                self._mark()
            return True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    def put_batch(self, batch: SharedBatch) -> bool:
        """Queue (or, pushed to an empty outbox, write) a shared batch; False past the limit."""
        if self._closed:
            return True
        sink = self._sink
        if sink is not None and not self._items:
            if batch.size + sink.backlog() > self._limit:
                return False
            sink.write_batch(batch)
            return True
        size = self._size + batch.size
        if size > self._limit or (sink is not None and size + sink.backlog() > self._limit):
            return False
        self._items.extend(batch.messages)
        self._size = size
        if sink is None:
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        return True

    def _mark(self) -> None:
        assert self._flusher is not None
        self._marked = True
        self._flusher.mark(self)

    def push(self) -> None:
        """Hand everything queued to the sink (the flusher calls this)."""
        self._marked = False
        if self._items and self._sink is not None:
            items, self._items, self._size = self._items, [], 0
            self._sink.write(items)

    async def take(self) -> list[bytes]:
        """Wait for messages and return all queued; ``[]`` once closed and drained."""
        while not self._items:
            if self._closed:
                return []
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        items, self._items, self._size = self._items, [], 0
        return items

    def close(self, *, discard: bool = False) -> None:
        """No more messages; ``take`` returns what is queued (or nothing if ``discard``)."""
        was_closed, self._closed = self._closed, True
        if discard:
            self._items, self._size = [], 0
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._sink is not None and not was_closed:
            self.push()
            on_close, self._on_close = self._on_close, None
            if on_close is not None:
                on_close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def queued_bytes(self) -> int:
        return self._size

    @property
    def over_limit(self) -> bool:
        """More is queued (or unsent by the transport) than the limit: the client is not reading."""
        backlog = self._sink.backlog() if self._sink is not None else 0
        return self._size + backlog > self._limit
