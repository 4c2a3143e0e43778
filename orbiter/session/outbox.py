"""The bounded queue of encoded messages between a session and its transport.

Fan-out appends to it without awaiting; the transport's writer takes
everything queued in one go and writes it as one batch. When the queued
bytes would pass the limit, :meth:`Outbox.put` refuses, and the session
closes the connection as a slow consumer instead of growing without bound.
"""

from __future__ import annotations

import asyncio


class Outbox:
    __slots__ = ("_closed", "_items", "_limit", "_size", "_waiter")

    def __init__(self, limit: int) -> None:
        self._items: list[bytes] = []
        self._size = 0
        self._limit = limit
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    def put(self, message: bytes, *, force: bool = False) -> bool:
        """Queue ``message``; False (and nothing queued) if the limit would be passed.

        ``force`` queues it whatever the limit: for a reply the client asked for
        (a recovery may be larger than the limit), when :attr:`over_limit` is False.
        """
        if self._closed:
            return True
        size = self._size + len(message)
        if size > self._limit and not force:
            return False
        self._items.append(message)
        self._size = size
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

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
        self._closed = True
        if discard:
            self._items, self._size = [], 0
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def queued_bytes(self) -> int:
        return self._size

    @property
    def over_limit(self) -> bool:
        """More is queued than the limit: the client is not reading."""
        return self._size > self._limit
