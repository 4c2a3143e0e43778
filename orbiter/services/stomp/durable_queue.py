"""Persistent STOMP queue messages: kept in the queue file until consumed, across restarts.

A SEND to a queue with ``persistent:true`` on a node with a data directory
(the SQLite engine) is stored before it is queued (:func:`put_persistent`):
its bytes are counted in the queue budgets at once, its row is written by
one writer thread in a *group commit* (what was stored or deleted while the
previous transaction was under way goes into the next one; nothing waits on
the event loop), and only once that transaction committed does the message
join its queue and the SEND get its RECEIPT. A failed transaction (a full
disk, an I/O error) fails its SENDs with
:class:`~orbiter.engine.base.PublishFailed` (an ERROR, never a RECEIPT) and
gives their bytes back. A message's row is deleted when it leaves the
queues (consumed, acknowledged or expired: the book's ``stored_gone``), in a
later group commit; :meth:`DurableQueues.synced` waits for what was asked so
far (an ACK's RECEIPT waits for it). At start :meth:`DurableQueues.open`
reads the rows back, oldest first, for the broker to queue again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from functools import partial
from pathlib import Path

from orbiter.engine.base import EngineUnavailable, PublishFailed
from orbiter.engine.sqlite_writer import WriterThread
from orbiter.services.stomp.queue_file import QueueFile, QueueFileError, StoredMessage
from orbiter.services.stomp.queues import MessageQueue, QueueBook, QueuedMessage, QueueFull

log = logging.getLogger("orbiter.stomp")


class DurableQueues:
    """The queue file, written in group commits by its own writer thread."""

    def __init__(self, path: Path, sync: str = "normal") -> None:
        self.path = path
        self._file = QueueFile(path, sync)
        self._writer: WriterThread | None = None
        self._next_key = 1
        #: Rows to insert in the next transaction, and the SENDs waiting for them.
        self._inserts: list[StoredMessage] = []
        self._stored: list[asyncio.Future[None]] = []
        #: Rows to delete in the next transaction.
        self._deletes: list[int] = []
        #: Waiting for everything asked before them (:meth:`synced`).
        self._synced: list[asyncio.Future[None]] = []
        self._in_flight = False
        self._scheduled = False

    async def open(self) -> list[StoredMessage]:
        """Open the file and read its messages, oldest first; :class:`EngineUnavailable`."""
        loop = asyncio.get_running_loop()
        writer = WriterThread(loop, "orbiter-stomp-queues")
        try:
            messages = await writer.call(self._file.open)
        except (QueueFileError, OSError) as exc:
            await writer.stop()
            raise EngineUnavailable(str(exc)) from None
        self._writer = writer
        if messages:
            self._next_key = messages[-1].key + 1
        return messages

    def new_key(self) -> int:
        """The number of the next message stored (the order of acceptance)."""
        key = self._next_key
        self._next_key += 1
        return key

    def store(self, message: StoredMessage) -> asyncio.Future[None]:
        """Write ``message``'s row; the future is done once it is committed
        (:class:`PublishFailed` if its transaction failed)."""
        future = asyncio.get_running_loop().create_future()
        self._inserts.append(message)
        self._stored.append(future)
        self._kick()
        return future

    def delete(self, key: int) -> None:
        """Delete a message's row (it left the queues), in a coming transaction."""
        self._deletes.append(key)
        self._kick()

    async def synced(self) -> None:
        """Return once what was stored or deleted before the call is committed
        (:class:`PublishFailed` if that failed)."""
        if not (self._in_flight or self._inserts or self._deletes):
            return
        future = asyncio.get_running_loop().create_future()
        self._synced.append(future)
        self._kick()
        await future

    def _kick(self) -> None:
        if self._in_flight or self._scheduled or self._writer is None:
            return
        self._scheduled = True
        asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Start the next transaction with everything asked since the last one."""
        self._scheduled = False
        if self._in_flight or self._writer is None:
            return
        inserts, stored, deletes, synced = self._inserts, self._stored, self._deletes, self._synced
        self._inserts, self._stored, self._deletes, self._synced = [], [], [], []
        if not (inserts or deletes):
            _settle(synced, None)
            return
        self._in_flight = True
        done = partial(self._committed, stored, deletes, synced)
        self._writer.submit(self._file.write, inserts, deletes, done=done)

    def _committed(
        self,
        stored: list[asyncio.Future[None]],
        deletes: list[int],
        synced: list[asyncio.Future[None]],
        _: object,
        error: BaseException | None,
    ) -> None:
        self._in_flight = False
        failure = None
        if error is not None:
            log.warning("cannot write the STOMP queue file %s: %s", self.path, error)
            failure = PublishFailed(
                f"the message could not be stored ({error}); it was not accepted"
            )
            self._deletes[:0] = deletes  # tried again with the next transaction
        _settle(stored, failure)
        _settle(synced, failure)
        if self._inserts or self._deletes or self._synced:
            self._kick()

    async def close(self) -> None:
        """Write what is asked, then close the file and end the writer thread."""
        writer = self._writer
        if writer is None:
            return
        with contextlib.suppress(PublishFailed):  # logged; what is left is read at next start
            await self.synced()
        self._writer = None
        await writer.call(self._file.close)
        await writer.stop()


def _settle(futures: list[asyncio.Future[None]], failure: PublishFailed | None) -> None:
    for future in futures:
        if future.done():
            continue
        if failure is None:
            future.set_result(None)
        else:
            future.set_exception(failure)


async def put_persistent(
    store: DurableQueues, book: QueueBook, queue: MessageQueue, message: QueuedMessage
) -> None:
    """Count ``message`` in ``queue``'s budgets (:class:`QueueFull`), store it, and queue it
    once committed (:class:`PublishFailed`, its bytes given back, if that failed).

    The message joins the queue when its transaction returns even if the SEND's
    connection is gone meanwhile: its row is there, so it is the queue's.
    """
    queue.reserve(message)
    message.key = store.new_key()
    expires = message.expires
    if not math.isinf(expires):
        expires = book.wall() + (expires - book.clock())
    future = store.store(
        StoredMessage(
            message.key, queue.name, message.headers, message.body, expires, message.sender
        )
    )

    def settle(done: asyncio.Future[None]) -> None:
        if done.cancelled() or done.exception() is not None:
            message.key = 0
            queue.unreserve(message)
            book.tidy(queue)
        else:
            queue.admit(message)

    future.add_done_callback(settle)
    await asyncio.shield(future)


def restore(store: DurableQueues, book: QueueBook, messages: list[StoredMessage]) -> int:
    """Queue the messages read from the file again, oldest first, within the budgets; delete
    those past their deadline and those the budgets (perhaps lowered since) refuse. Returns
    how many were queued."""
    now, wall = book.clock(), book.wall()
    queued = 0
    dropped = 0
    for stored in messages:
        deadline = now + (stored.expires - wall) if not math.isinf(stored.expires) else math.inf
        if deadline <= now:  # expired while the server was down
            store.delete(stored.key)
            continue
        queue = book.get(stored.queue)
        if queue is None:  # past stomp.max_queues
            store.delete(stored.key)
            dropped += 1
            continue
        message = QueuedMessage(
            f"s{stored.key}",
            stored.headers,
            stored.body,
            deadline,
            sender=stored.sender,
            key=stored.key,
        )
        try:
            queue.reserve(message)
        except QueueFull:  # a budget lowered since it was accepted
            store.delete(stored.key)
            dropped += 1
            book.tidy(queue)
            continue
        queue.admit(message)
        queued += 1
    if dropped:
        log.warning(
            "%d stored STOMP queue messages dropped at start: the [stomp] queue budgets "
            "(lowered since they were accepted) have no room for them",
            dropped,
        )
    return queued
