"""The bounded queue of encoded messages between a session and its transport.

Fan-out appends to it without awaiting. There is one output mode: the
transport attaches a :class:`Sink` and is pushed to. Messages queued by
``put`` are handed over once per event-loop iteration (by the node's
:class:`Flusher`, so a burst becomes one write), and a :class:`SharedBatch`
of publications arriving at an empty outbox goes straight to the sink,
which writes the bytes framed once for every subscriber. A transport that
writes from a task of its own (STOMP over TCP or WebSocket, the Orbited
streams) attaches a :class:`Pull`, the sink that collects what it is handed
and wakes the task's :meth:`Pull.take`. When the bytes queued plus those the
sink holds unsent would pass the limit, the outbox refuses, and the session
closes the connection as a slow consumer instead of growing without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from orbiter.services.pushes import pushes
from orbiter.services.shared_batch import SharedBatch


class Sink(Protocol):
    """Where an outbox's messages go: the transport's writer."""

    def backlog(self) -> int:
        """Bytes handed over but not yet sent by the transport."""

    def write(self, messages: list[bytes]) -> None:
        """Write messages queued one by one (replies, pushes)."""

    def write_batch(self, batch: SharedBatch) -> None:
        """Write a shared batch of publications (framed from :func:`pushes`)."""


class Scheduler(Protocol):
    """Calls :meth:`Outbox.push` soon after :meth:`mark` (the node's :class:`Flusher`)."""

    def mark(self, outbox: Outbox) -> None: ...


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
        "_discarded",
        "_flusher",
        "_items",
        "_limit",
        "_marked",
        "_on_close",
        "_sink",
        "_size",
    )

    def __init__(self, limit: int) -> None:
        self._items: list[bytes] = []
        self._size = 0
        self._limit = limit
        self._closed = False
        self._discarded = False
        self._sink: Sink | None = None
        self._flusher: Scheduler | None = None
        self._marked = False
        self._on_close: Callable[[], None] | None = None

    def attach(self, sink: Sink, flusher: Scheduler, on_close: Callable[[], None]) -> None:
        """Push to ``sink`` from now on; until then, messages wait here.

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
        if sink is not None and not self._marked:
            self._mark()
        return True

    def put_batch(self, batch: SharedBatch) -> bool:
        """Queue (or, at an empty outbox, write) a shared batch; False past the limit."""
        if self._closed:
            return True
        if batch.native is None:  # the first subscriber of the batch: its size
            pushes(batch)
        sink = self._sink
        if sink is not None and not self._items:
            if batch.native_size + sink.backlog() > self._limit:
                return False
            sink.write_batch(batch)
            return True
        size = self._size + batch.native_size
        if size > self._limit or (sink is not None and size + sink.backlog() > self._limit):
            return False
        self._items.extend(pushes(batch))
        self._size = size
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

    def close(self, *, discard: bool = False) -> None:
        """No more messages; what is queued is still handed over (unless ``discard``)."""
        was_closed, self._closed = self._closed, True
        if discard:
            self._items, self._size = [], 0
            self._discarded = True
        if self._sink is not None and not was_closed:
            self.push()
            on_close, self._on_close = self._on_close, None
            if on_close is not None:
                on_close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def discarded(self) -> bool:
        """Closed with ``discard``: what a sink still holds is not to be sent either."""
        return self._discarded

    @property
    def queued_bytes(self) -> int:
        return self._size

    @property
    def over_limit(self) -> bool:
        """More is queued (or unsent by the transport) than the limit: the client is not reading."""
        backlog = self._sink.backlog() if self._sink is not None else 0
        return self._size + backlog > self._limit


class Pull:
    """The sink of a transport that writes from its own task: ``await take()`` in a loop.

    It attaches itself to ``outbox`` and is its own :class:`Scheduler`: a
    ``put`` wakes the waiting :meth:`take`, which hands over what the outbox
    queued, so everything queued in the meantime is written as one batch (no
    extra loop iteration, no flusher). What it holds counts in the outbox's
    limit (:meth:`backlog`) until taken.
    """

    __slots__ = ("_ended", "_items", "_outbox", "_size", "_waiter")

    def __init__(self, outbox: Outbox) -> None:
        self._items: list[bytes] = []
        self._size = 0
        self._ended = False
        self._waiter: asyncio.Future[None] | None = None
        self._outbox = outbox
        outbox.attach(self, self, self._end)

    async def take(self) -> list[bytes]:
        """Wait for messages and return them all; ``[]`` once the outbox is closed and drained."""
        outbox = self._outbox
        while True:
            outbox.push()
            if self._items:
                items, self._items, self._size = self._items, [], 0
                return items
            if self._ended:
                return []
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _end(self) -> None:
        self._ended = True
        if self._outbox.discarded:
            self._items, self._size = [], 0
        self._wake()

    # ------------------------------------------------------------ Scheduler

    def mark(self, outbox: Outbox) -> None:
        self._wake()

    # ------------------------------------------------------------ Sink

    def backlog(self) -> int:
        return self._size

    def write(self, messages: list[bytes]) -> None:
        self._items.extend(messages)
        self._size += sum(map(len, messages))
        self._wake()

    def write_batch(self, batch: SharedBatch) -> None:
        self.write(pushes(batch))
