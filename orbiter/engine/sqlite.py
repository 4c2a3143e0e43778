"""The durable embedded engine: channel streams kept in a SQLite file, the newest in memory.

**Acknowledged means kept.** A publication is queued on the event loop and
written by one writer thread in a *group commit*: what was queued while the
previous transaction was under way goes into the next one, one transaction
in flight at a time (so a busy node writes thousands of publications per
transaction, a quiet one commits each at once). A publication is delivered
to this node's subscribers, and returned to its publisher, only once its
transaction committed; subscribers get them in offset order, as commits
return in order. So nothing a client saw or was told OK can be forgotten by
a process crash, and after a crash or a clean stop each stream keeps its
epoch and offset. A route that queued a read's publications and calls
:meth:`SqliteBroker.flush` may have their commit reported within that call:
the loop waits for it a bounded time (``commit_wait``, a fraction of a
millisecond; never longer, whatever the disk does), so that they are
delivered and answered in the read's own loop iteration. A transaction
that fails (a full disk, an I/O error) fails its publishers with
:class:`~orbiter.engine.base.PublishFailed`; nothing of it was delivered,
and later publications are tried again.

**Offsets are given when a batch is cut**, just before its transaction
starts, not when :meth:`SqliteBroker.publish` is called: nobody sees an
offset before its commit anyway, and with one transaction in flight a
failed one gives its offsets back (no later publication took one), so the
offsets a stream ever shows have no gaps. Given at publish time, the
publications queued behind a failed transaction would keep their numbers
and leave holes that readers could not tell from trimmed history.

**Memory holds each channel's newest publications** (at most
``window`` of them, and at most the channel's history size), bounded over
the node by ``history.max_bytes`` (past it the windows of the channels
published least recently are dropped first; the file still has them). A
history read the window does not cover reads the file in the reader thread
(its own connection; WAL lets it read while the writer writes), never on
the event loop. History is bounded on disk by each channel's rule (size,
age): reads apply it at once, the periodic sweep lets go of what it
excludes (a commit row is deleted once nothing in it is kept:
``engine/sqlite_index.py``); and over the node by ``max_disk_bytes`` (the
sweep deletes the oldest commit rows first).

Streams and the *void epoch* of channels never published behave as in the
memory engine (``engine/memory.py``), and both live in the file, so a
restart changes neither. The file's format and what a power loss can lose
under each ``sync`` setting: ``engine/sqlite_store.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from array import array
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from time import time as _now  # (one publication's clock: a global, not an attribute)

import orjson

from orbiter.engine.base import (
    CHECK_TIMEOUT,
    EngineUnavailable,
    HistoryPage,
    HistoryPolicy,
    Kept,
    PublishFailed,
    TooManyStreams,
)
from orbiter.engine.local import LocalBroker
from orbiter.engine.memory import _QUOTED_OVERHEAD, PUBLICATION_OVERHEAD, new_epoch
from orbiter.engine.sqlite_batch import WriteBatch
from orbiter.engine.sqlite_index import CommitIndex, StreamRows, pack_keys
from orbiter.engine.sqlite_store import SqliteStore, StoreError
from orbiter.engine.sqlite_writer import WriterThread
from orbiter.model import JSON, Publication, StreamPosition

log = logging.getLogger("orbiter.engine.sqlite")

#: Publications of each channel kept in memory by default (``engine.memory_window``).
DEFAULT_WINDOW = 128
#: Channels trimmed on disk in one transaction at most, so that a sweep over many
#: channels does not hold up the publications committed with it.
TRIMS_PER_TRANSACTION = 1000
#: Commit rows deleted in one transaction at most.
DELETES_PER_TRANSACTION = 10_000
#: Seconds the first :meth:`SqliteBroker.flush` of a loop iteration waits at most for
#: the commit it starts (``commit_wait``): a group commit of a few publications is
#: over within it on a machine that is not overloaded.
DEFAULT_COMMIT_WAIT = 0.0002


class _Stream:
    __slots__ = (
        "assigned",
        "channel",
        "emptied",
        "epoch",
        "id",
        "last_time",
        "policy",
        "queued",
        "rows",
        "stored",
        "top",
        "touched",
        "trim_due",
        "window",
        "window_bytes",
    )

    def __init__(self, id_: int, channel: str, epoch: str, policy: HistoryPolicy, now: float):
        self.id = id_
        self.channel = channel
        self.epoch = epoch
        #: The newest committed offset (what readers and subscribers see), and the newest
        #: given to a publication in the transaction under way (``top`` when none is).
        self.top = 0
        self.assigned = 0
        #: Publications queued or in flight, not yet committed or failed.
        self.queued = 0
        #: The file has the stream's row.
        self.stored = False
        self.touched = now
        #: When its newest publication was made.
        self.last_time = now
        self.policy = policy
        #: Its newest committed publications (offsets without a gap, up to ``top``), each
        #: with its :attr:`~Publication.size`, and their bytes.
        self.window: deque[Publication] = deque()
        self.window_bytes = 0
        #: Publications committed since the sweep last trimmed it on disk; its last
        #: publication expired and was trimmed on disk.
        self.trim_due = False
        self.emptied = False
        #: Its stored offsets and the commit rows holding them.
        self.rows = StreamRows()


class _Queued:
    """A publication waiting for its transaction, and who is told how it went: a future
    (:meth:`SqliteBroker.publish_soon`) or a callback (:meth:`SqliteBroker.publish_then`)."""

    __slots__ = (
        "commit",
        "data",
        "done",
        "encoded",
        "future",
        "offset",
        "size",
        "stream",
        "tags",
        "tags_json",
        "time",
    )

    def __init__(
        self,
        stream: _Stream,
        data: JSON,
        tags: dict[str, str] | None,
        now: float,
        future: asyncio.Future[Publication] | None,
        done: Kept | None,
    ) -> None:
        self.stream = stream
        self.data = data
        self.tags = tags
        self.tags_json = orjson.dumps(tags) if tags else None
        self.time = now
        self.future = future
        self.done = done
        self.offset = 0
        #: The commit row that stores it (0: not stored, the channel keeps no history).
        self.commit = 0
        # Its size is the memory engine's (``kept_size``). A string goes in its commit row
        # as it is: the writer thread encodes it with the row (``encode_rows``), not the
        # loop here; other data goes encoded.
        self.encoded: str | bytes
        if type(data) is str:
            self.encoded = data
            if data.isascii():
                size = len(data) + _QUOTED_OVERHEAD
            else:
                size = len(orjson.dumps(data)) + PUBLICATION_OVERHEAD
        else:
            self.encoded = orjson.dumps(data)
            size = len(self.encoded) + PUBLICATION_OVERHEAD
        if tags:
            size += sum(len(name) + len(value) for name, value in tags.items())
        self.size = size


def _decode(
    store: SqliteStore,
    commits: list[int],
    stream: int,
    channel: str,
    epoch: str,
    first: int,
    last: int,
) -> list[Publication]:
    """Read the commit rows and decode the stream's publications from ``first`` to
    ``last`` in them (runs in the reader thread)."""
    pubs = []
    for blob in store.read_commits(commits):
        for owner, offset, data, tags, when in orjson.loads(blob):
            if owner == stream and first <= offset <= last:
                pubs.append(Publication(channel, offset, epoch, data, when, tags))
    return pubs


def _nothing() -> None:
    """What :meth:`SqliteBroker.check` runs on the writer thread: a place in its queue."""


class SqliteBroker(LocalBroker):
    """Streams and delivery for a single orbiter process, kept in ``path``."""

    def __init__(
        self,
        path: str | Path,
        *,
        sync: str = "normal",
        window: int = DEFAULT_WINDOW,
        sweep_interval: float = 5.0,
        max_streams: int | None = None,
        max_history_bytes: int | None = None,
        max_disk_bytes: int | None = None,
        commit_wait: float = DEFAULT_COMMIT_WAIT,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        #: Seconds the first flush of a loop iteration waits for its commit at most (0:
        #: none does), and whether one did in this iteration.
        self._commit_wait = commit_wait
        self._waited = False
        #: Bytes of the file in use at most (None: unbounded); each sweep deletes the
        #: oldest publications of every channel past it.
        self._max_disk_bytes = max_disk_bytes
        self._store = SqliteStore(self.path, sync)
        self._window = window
        self._writer: WriterThread | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._streams: dict[str, _Stream] = {}
        self._next_id = 1
        #: Which commit row holds each stored publication, and the next row's id.
        self._index = CommitIndex()
        self._next_commit = 1
        self._max_streams = max_streams
        self._full_sweep_at = 0.0
        self._max_history_bytes = max_history_bytes
        #: The same, infinite when unbounded (one comparison per publication either way).
        self._window_limit: float = math.inf if max_history_bytes is None else max_history_bytes
        #: Streams with a window, the least recently published first, and their bytes.
        self._windows: OrderedDict[_Stream, None] = OrderedDict()
        self._window_bytes = 0
        #: The epoch of a channel with no stream (see ``engine/memory.py``), kept in the file.
        self.void_epoch = ""
        #: Publications waiting for the next transaction, and those of the one in flight.
        self._pending: list[_Queued] = []
        self._in_flight: list[_Queued] | None = None
        #: Forgotten streams, tops and deleted commit rows for the next transaction.
        self._upkeep = WriteBatch()
        self._cut_scheduled = False
        #: The scheduled cut (:meth:`flush` cuts at once and cancels it).
        self._cut_handle: asyncio.Handle | None = None
        #: Set when nothing is queued or in flight.
        self._idle = asyncio.Event()
        self._idle.set()
        #: Transactions that failed (a full disk), for ``/metrics`` and ``/api/stats``.
        self.failures = 0
        self._sweep_interval = sweep_interval
        self._sweeper: asyncio.Task[None] | None = None

    def stats(self) -> dict[str, int]:
        return {
            "channels": len(self._streams),
            "history_bytes": self._window_bytes,
            "engine_failures": self.failures,
        }

    async def check(self) -> str | None:
        """Why publications cannot be committed now (the file closed, the writer thread
        gone, or not through its queue within :data:`CHECK_TIMEOUT`), or None."""
        writer = self._writer
        if writer is None or self._closed:
            return "the SQLite data file is not open"
        if not writer.alive:
            return "the SQLite writer thread has stopped"
        try:
            await asyncio.wait_for(writer.call(_nothing), CHECK_TIMEOUT)
        except TimeoutError:
            return f"the SQLite writer did not get through its queue within {CHECK_TIMEOUT:g} s"
        return None

    # ------------------------------------------------------------ start and stop

    async def start(self) -> None:
        """Open the file and read its streams; :class:`EngineUnavailable` if it cannot."""
        if self._loop is not None:
            return
        loop = asyncio.get_running_loop()
        writer = WriterThread(loop, "orbiter-sqlite-writer")
        reader = ThreadPoolExecutor(1, thread_name_prefix="orbiter-sqlite-reader")
        try:
            loaded = await writer.call(self._store.open)
            await loop.run_in_executor(reader, self._store.open_reader)
            if loaded.void_epoch is None:
                void = WriteBatch(void_epoch=new_epoch())
                await writer.call(self._store.write, void)
                loaded_void = void.void_epoch
            else:
                loaded_void = loaded.void_epoch
        except (StoreError, OSError) as exc:
            await writer.call(self._store.close)
            await writer.stop()
            await loop.run_in_executor(reader, self._store.close_reader)
            reader.shutdown()
            raise EngineUnavailable(str(exc)) from None
        assert loaded_void is not None
        self.void_epoch = loaded_void
        for row in loaded.streams:
            policy = HistoryPolicy(row.keep, row.ttl, row.meta_ttl)
            stream = _Stream(row.id, row.channel, row.epoch, policy, row.touched)
            stream.top = stream.assigned = row.top
            stream.stored = True
            stream.trim_due = True
            stream.rows = loaded.rows[row.id]
            self._streams[row.channel] = stream
        self._next_id = loaded.next_stream
        self._index = loaded.index
        self._next_commit = loaded.next_commit
        self._loop, self._writer, self._reader = loop, writer, reader
        self._sweeper = loop.create_task(self._sweep_forever())
        log.info(
            "channel history in %s: %d streams (sync %s)",
            self.path.resolve(),
            len(self._streams),
            self._store.sync,
        )

    async def close(self) -> None:
        """Commit what is queued, then close the file."""
        loop, writer, reader = self._loop, self._writer, self._reader
        if self._closed or loop is None or writer is None or reader is None:
            return
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        # Bring the rows of streams published since the last sweep up to date (a start
        # finds their tops anyway; this keeps their time and policy too).
        for stream in self._streams.values():
            if stream.stored and stream.trim_due:
                self._upkeep.tops.append(self._row(stream, stream.top))
        self._schedule_cut()
        await self._idle.wait()
        await writer.call(self._store.close)
        await writer.stop()
        await loop.run_in_executor(reader, self._store.close_reader)
        reader.shutdown()

    # ------------------------------------------------------------ publishing

    async def publish(
        self, channel: str, data: JSON, policy: HistoryPolicy, tags: dict[str, str] | None = None
    ) -> Publication:
        return await self.publish_soon(channel, data, policy, tags)

    def publish_soon(
        self, channel: str, data: JSON, policy: HistoryPolicy, tags: dict[str, str] | None = None
    ) -> asyncio.Future[Publication]:
        """Queue a publication: a future of it once committed (or :class:`PublishFailed`).

        :class:`TooManyStreams` at once if it would open a stream past ``max_streams``;
        :class:`PublishFailed` at once if the engine is not running.
        """
        future: asyncio.Future[Publication] = self._running().create_future()
        self._queue(channel, data, policy, tags, future, None)
        return future

    def publish_then(
        self,
        channel: str,
        data: JSON,
        policy: HistoryPolicy,
        tags: dict[str, str] | None,
        done: Kept,
    ) -> bool:
        """Queue a publication; ``done`` is called with it from the commit's report (or with
        :class:`PublishFailed` from the failure's), in queue order. Refused at once as
        :meth:`publish_soon` is."""
        self._running()
        self._queue(channel, data, policy, tags, None, done)
        return True

    def _running(self) -> asyncio.AbstractEventLoop:
        """The loop, or :class:`PublishFailed` if the engine is not running."""
        loop = self._loop
        if loop is None or self._closed:
            raise PublishFailed(
                "the history store is closed" if self._closed else "the engine is not started"
            )
        return loop

    def _queue(
        self,
        channel: str,
        data: JSON,
        policy: HistoryPolicy,
        tags: dict[str, str] | None,
        future: asyncio.Future[Publication] | None,
        done: Kept | None,
    ) -> None:
        now = _now()
        stream = self._streams.get(channel)
        if stream is None:
            stream = self._new_stream(channel, policy, now)
        else:
            stream.touched = now
            stream.policy = policy
        self._pending.append(_Queued(stream, data, tags, now, future, done))
        stream.queued += 1
        if self._in_flight is None and not self._cut_scheduled:
            # (a transaction in flight or a cut scheduled has cleared it already)
            self._idle.clear()
            self._cut_scheduled = True
            assert self._loop is not None
            self._cut_handle = self._loop.call_soon(self._cut)

    def flush(self) -> None:
        """Cut now what a read queued (see :meth:`Broker.flush`): its transaction starts in
        this iteration instead of the next. With one in flight, nothing changes: what is
        queued goes in the next transaction, once that one returns.

        The first flush of a loop iteration then waits up to ``commit_wait`` for the
        commit, and if it is over by then, reports it at once: the read's publications
        are delivered and answered in the read's own iteration, not once the loop comes
        back to the writer's report. Only the first: reads that follow in the same
        iteration share the next commit (group commit), and the loop waits at most
        ``commit_wait`` an iteration.
        """
        if self._cut_scheduled and self._in_flight is None:
            handle = self._cut_handle
            if handle is not None:
                handle.cancel()
            wait = self._commit_wait
            if wait > 0:
                if self._waited:
                    wait = 0.0
                else:
                    self._waited = True
                    assert self._loop is not None
                    # (queued before what the report may queue: the next iteration's
                    # first flush may wait again)
                    self._loop.call_soon(self._next_wait)
            self._cut(wait)

    def _next_wait(self) -> None:
        self._waited = False

    def _schedule_cut(self) -> None:
        if self._loop is None or self._cut_scheduled or self._in_flight is not None:
            return
        self._cut_scheduled = True
        self._idle.clear()
        self._cut_handle = self._loop.call_soon(self._cut)

    def _cut(self, wait: float = 0.0) -> None:
        """Give the queued publications their offsets and start their transaction; wait up
        to ``wait`` seconds for it, and report it at once if it is over by then."""
        self._cut_scheduled = False
        self._cut_handle = None
        if self._in_flight is not None:
            return
        queued, self._pending = self._pending, []
        batch, self._upkeep = self._upkeep, WriteBatch()
        index = self._index
        if index.dead:
            batch.deletes.extend(index.dead)
            index.dead = []
        if len(batch.tops) > TRIMS_PER_TRANSACTION:  # the rest in the next ones
            self._upkeep.tops = batch.tops[TRIMS_PER_TRANSACTION:]
            batch.tops = batch.tops[:TRIMS_PER_TRANSACTION]
            # A row's publications go only once its stream's row has its top.
            self._upkeep.deletes, batch.deletes = batch.deletes, []
        elif len(batch.deletes) > DELETES_PER_TRANSACTION:
            self._upkeep.deletes = batch.deletes[DELETES_PER_TRANSACTION:]
            batch.deletes = batch.deletes[:DELETES_PER_TRANSACTION]
        if len(batch.merges) > 1:  # one run a transaction: a few ms, never a long stall
            self._upkeep.merges = batch.merges[1:]
            batch.merges = batch.merges[:1]
        if not queued and not batch.upkeep:
            self._idle.set()
            return
        # Streams new to the file, and streams keeping no history (no publication row
        # says where they stand: their row does), each once: seldom any.
        fresh: dict[_Stream, None] | None = None
        unkept: dict[_Stream, None] | None = None
        rows = batch.publications
        keys: list[int] = []
        commit = self._next_commit
        for item in queued:
            stream = item.stream
            if not stream.stored and (fresh is None or stream not in fresh):
                if fresh is None:
                    fresh = {}
                fresh[stream] = None
                policy = stream.policy
                batch.new_streams.append(
                    (
                        stream.id,
                        stream.channel,
                        stream.epoch,
                        item.time,
                        policy.size,
                        policy.ttl,
                        policy.meta_ttl,
                    )
                )
            offset = item.offset = stream.assigned = stream.assigned + 1
            if stream.policy.size:
                rows.append((stream.id, offset, item.encoded, item.tags_json, item.time))
                keys.append(stream.id)
                keys.append(offset)
                item.commit = commit
            else:
                if unkept is None:
                    unkept = {}
                unkept[stream] = None
        if rows:
            self._next_commit = batch.commit = commit
            self._next_commit += 1
            batch.time = _now()
            batch.keys = pack_keys(array("q", keys))
        if unkept is not None:
            for stream in unkept:
                batch.tops.append(self._row(stream, stream.assigned))
        self._in_flight = queued
        assert self._loop is not None
        assert self._writer is not None
        done = partial(self._committed, queued, batch)
        self._writer.submit(self._store.write, batch, done=done, wait=wait)

    @staticmethod
    def _row(stream: _Stream, top: int) -> tuple[int, float, int, float, float, int]:
        """What brings the stream's row up to date (:attr:`WriteBatch.tops`)."""
        policy = stream.policy
        return (top, stream.touched, policy.size, policy.ttl, policy.meta_ttl, stream.id)

    def _committed(
        self,
        queued: list[_Queued],
        batch: WriteBatch,
        _: None,
        error: BaseException | None,
    ) -> None:
        """A transaction returned: deliver and answer its publications, or fail them.

        It counts as in flight until all are answered: what the answers' callbacks
        queue is cut at the end, in the next transaction, never amid this report.
        """
        if error is not None:
            for item in queued:
                item.stream.queued -= 1
            self._failed(queued, batch, error)
        else:
            index = self._index
            if batch.commit:
                index.committed(batch.commit, len(batch.publications), batch.time)
            for group in batch.merges:
                if index.merged(group) and group[-1] in self._upkeep.deletes:
                    self._upkeep.deletes.remove(group[-1])  # it was brought back
            if batch.deleted_through:
                index.deleted_through(
                    batch.deleted_through, [s.rows for s in self._streams.values()]
                )
            for item in queued:  # (all before any is delivered, as a callback may sweep)
                stream = item.stream
                stream.stored = True
                stream.trim_due = True
                stream.emptied = False
            handler, subscribed = self._on_publication, self._subscribed
            for item in queued:
                stream = item.stream
                stream.queued -= 1
                offset = stream.top = item.offset
                pub = Publication(
                    stream.channel, offset, stream.epoch, item.data, item.time, item.tags, item.size
                )
                stream.last_time = item.time
                if item.commit:
                    index.add(stream.rows, offset, item.commit)
                self._remember(stream, pub)
                if handler is not None and stream.channel in subscribed:
                    try:
                        handler(pub)
                    except Exception:
                        log.exception("delivering a publication of %r failed", stream.channel)
                done = item.done
                if done is not None:
                    try:
                        done(pub)
                    except Exception:
                        log.exception("answering a publication of %r failed", stream.channel)
                else:
                    future = item.future
                    if future is not None and not future.done():
                        future.set_result(pub)
        self._in_flight = None
        if self._pending:
            self._cut()
        elif self._upkeep.upkeep or self._index.dead:
            if error is None:
                self._cut()
                return
            self._idle.set()
            if self._closed:  # the file refuses writes: what is left of the upkeep waits
                return  # for the next start (its sweep finds the same streams)
            assert self._loop is not None
            self._loop.call_later(1.0, self._schedule_cut)  # not a busy loop on a full disk
        else:
            self._idle.set()

    def _failed(self, queued: list[_Queued], batch: WriteBatch, error: BaseException) -> None:
        """Take back the failed transaction's offsets; fail its publishers; keep its upkeep."""
        self.failures += 1
        log.error(
            "could not store %d publications in %s: %s (their publishers are told)",
            len(queued),
            self.path,
            error,
        )
        for item in queued:
            item.stream.assigned = item.stream.top
        if batch.commit:
            self._next_commit = batch.commit
        upkeep = self._upkeep
        upkeep.forgets[:0] = batch.forgets
        upkeep.deletes[:0] = batch.deletes
        upkeep.merges[:0] = batch.merges
        upkeep.tops[:0] = batch.tops
        if upkeep.void_epoch is None:
            upkeep.void_epoch = batch.void_epoch
        failure = PublishFailed(f"the server could not store the publication: {error}")
        for item in queued:
            done = item.done
            if done is not None:
                try:
                    done(failure)
                except Exception:
                    log.exception("answering a publication of %r failed", item.stream.channel)
            else:
                future = item.future
                if future is not None and not future.done():
                    future.set_exception(failure)

    # ------------------------------------------------------------ reading

    async def history(
        self,
        channel: str,
        since: StreamPosition | None,
        policy: HistoryPolicy,
        limit: int | None = None,
    ) -> HistoryPage:
        stream = self._streams.get(channel)
        if stream is None or stream.top == 0:  # nothing committed: nothing to read
            epoch = self.void_epoch if stream is None else stream.epoch
            position = StreamPosition(0, epoch)
            return HistoryPage(position, [], since is None or since == position)
        now = time.time()
        stream.touched = now
        stream.policy = policy
        top = stream.top
        position = StreamPosition(top, stream.epoch)
        floor = max(0, top - policy.size)  # offsets above it are within the size
        cutoff = now - policy.ttl
        if since is None:
            count = policy.size if limit is None else max(0, min(limit, policy.size))
            if count == 0:
                return HistoryPage(position, [], True)
            pubs = await self._read(stream, max(floor, top - count) + 1, top)
            return HistoryPage(position, [p for p in pubs if p.time >= cutoff], True)
        if since.epoch != stream.epoch or since.offset > top:
            return HistoryPage(position, [], False)
        if since.offset == top:
            return HistoryPage(position, [], True)
        first = since.offset + 1
        pubs = [p for p in await self._read(stream, max(first, floor + 1), top) if p.time >= cutoff]
        return HistoryPage(position, pubs, bool(pubs) and pubs[0].offset == first)

    async def history_before(
        self, channel: str, before: int, policy: HistoryPolicy, limit: int
    ) -> HistoryPage:
        stream = self._streams.get(channel)
        if stream is None or stream.top == 0:
            epoch = self.void_epoch if stream is None else stream.epoch
            return HistoryPage(StreamPosition(0, epoch), [], True)
        now = time.time()
        stream.touched = now
        stream.policy = policy
        top = stream.top
        position = StreamPosition(top, stream.epoch)
        last = min(before - 1, top)
        first = max(max(0, top - policy.size) + 1, last - max(0, limit) + 1)
        cutoff = now - policy.ttl
        pubs = [p for p in await self._read(stream, first, last) if p.time >= cutoff]
        return HistoryPage(position, pubs, True)

    async def _read(self, stream: _Stream, first: int, last: int) -> list[Publication]:
        """The stream's publications from offset ``first`` to ``last`` (at most its top):
        from memory if its window has them, else from the file."""
        if first > last:
            return []
        window = stream.window
        if window and window[0].offset <= first:
            start = window[0].offset
            return list(itertools.islice(window, first - start, last - start + 1))
        commits = self._index.commits_for(stream.rows, first, last)
        if not commits:
            return []
        assert self._loop is not None
        assert self._reader is not None
        return await self._loop.run_in_executor(
            self._reader,
            _decode,
            self._store,
            commits,
            stream.id,
            stream.channel,
            stream.epoch,
            first,
            last,
        )

    # ------------------------------------------------------------ streams

    def _new_stream(self, channel: str, policy: HistoryPolicy, now: float) -> _Stream:
        if self._max_streams is not None and len(self._streams) >= self._max_streams:
            if now >= self._full_sweep_at + 1.0:  # forget idle streams, at most once a second
                self._full_sweep_at = now
                self.sweep(now)
            if len(self._streams) >= self._max_streams:
                raise TooManyStreams(
                    f"the server keeps {self._max_streams} channels (limits.max_channels); "
                    f"cannot open {channel!r}"
                )
        stream = _Stream(self._next_id, channel, self.void_epoch, policy, now)
        self._next_id += 1
        self._streams[channel] = stream
        return stream

    def _remember(self, stream: _Stream, pub: Publication) -> None:
        """Keep a committed publication in its stream's window, within the node's bytes."""
        cap = stream.policy.size
        if cap > self._window:
            cap = self._window
        window = stream.window
        if window and window[-1].offset != pub.offset - 1:
            self._drop_window(stream)  # not contiguous (cannot happen): start again
        window.append(pub)
        size = pub.size
        stream.window_bytes += size
        total = self._window_bytes = self._window_bytes + size
        while len(window) > cap:
            dropped = window.popleft().size
            stream.window_bytes -= dropped
            total = self._window_bytes = self._window_bytes - dropped
        windows = self._windows
        if window:
            try:
                windows.move_to_end(stream)
            except KeyError:
                windows[stream] = None
        if total > self._window_limit:
            while self._window_bytes > self._window_limit and windows:
                self._drop_window(next(iter(windows)))

    def _drop_window(self, stream: _Stream) -> None:
        self._window_bytes -= stream.window_bytes
        stream.window.clear()
        stream.window_bytes = 0
        self._windows.pop(stream, None)

    # ------------------------------------------------------------ upkeep

    def sweep(self, now: float | None = None) -> None:
        """Trim history past each channel's rule (memory now, the file in the next
        transaction) and forget idle streams; runs periodically."""
        now = time.time() if now is None else now
        forget = []
        upkeep = self._upkeep
        index = self._index
        for channel, stream in self._streams.items():
            policy = stream.policy
            cutoff = now - policy.ttl
            window = stream.window
            while window and window[0].time < cutoff:
                dropped = window.popleft().size
                stream.window_bytes -= dropped
                self._window_bytes -= dropped
            if not window and stream.window_bytes == 0:
                self._windows.pop(stream, None)
            expired = policy.size == 0 or stream.last_time < cutoff
            if stream.stored and (stream.trim_due or (expired and not stream.emptied)):
                upkeep.tops.append(self._row(stream, stream.top))  # before its rows go
                index.trim(stream.rows, stream.top - policy.size, cutoff)
                stream.trim_due = False
                stream.emptied = expired
            if (
                expired
                and not stream.queued
                and channel not in self._subscribed
                and stream.touched < now - policy.meta_ttl
            ):
                forget.append(channel)
        for channel in forget:
            stream = self._streams.pop(channel)
            self._drop_window(stream)
            index.release(stream.rows, stream.rows.last)
            if stream.stored:
                upkeep.forgets.append(stream.id)
        if forget:
            # Positions read from the void epoch before this point may name one of
            # these streams: a stream created from now on must not honour them.
            self.void_epoch = upkeep.void_epoch = new_epoch()
        upkeep.merges.extend(index.merges())
        if self._max_disk_bytes is not None:
            upkeep.disk_budget = self._max_disk_bytes
        if upkeep.upkeep or index.dead:
            self._schedule_cut()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            self.sweep()
