"""The SQLite file of the SQLite engine: its schema, and its blocking reads and writes.

Nothing here knows asyncio. :class:`SqliteStore` is used from two threads
the engine (``engine/sqlite.py``) owns: the writer thread calls
:meth:`SqliteStore.open` and :meth:`SqliteStore.write` (one transaction per
:class:`WriteBatch`: a group commit), the reader thread
:meth:`SqliteStore.open_reader` and the ``read_*`` methods, each on its own
connection (WAL lets the reader see the last commit while the writer writes).

The schema keeps, per channel stream, its epoch and top offset (kept longer
than its publications, so a drained channel still answers recovery
truthfully) and the policy it was last published with; and the publications
(stream, offset, data, tags, time), data and tags as JSON bytes, in the order
written (a rowid table: a transaction appends to its end) with an index on
(stream, offset). A stream's row is not updated by every transaction (that
would dirty a page per channel per commit): its top is the larger of the
row's and its newest publication's, and the row is brought up to date
whenever its publications are trimmed (so a drained stream's row has it) and
at a clean stop. Measured (2,000 channels, 64 publications a transaction):
6.4 µs of CPU per publication with the row updated each time and the
publications keyed by (stream, offset), 3.1 µs so.

Durability: in WAL mode a commit is in the log file when :meth:`write`
returns, so a process crash (``kill -9``) loses nothing committed. With
``synchronous = NORMAL`` the log is synced to the disk only at checkpoints,
so a power loss or OS crash can lose the transactions since the last
checkpoint (never corrupt the file); ``FULL`` syncs the log at every commit
and loses nothing committed, at the cost of one ``fsync`` per group commit.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from orbiter.engine.sqlite_file import SYNC_MODES, FileLock, compact

#: The schema this code reads and writes (``PRAGMA user_version``).
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS streams (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL UNIQUE,
    epoch TEXT NOT NULL,
    top INTEGER NOT NULL,
    touched REAL NOT NULL,
    keep INTEGER NOT NULL,
    ttl REAL NOT NULL,
    meta_ttl REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS publications (
    stream INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    data BLOB NOT NULL,
    tags BLOB,
    time REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS publications_by_stream ON publications (stream, offset);
"""

#: Publications deleted at most in one transaction to fit ``engine.max_disk_bytes``.
DISK_TRIM_ROWS = 20_000

#: Every publication of a batch in one statement: its rows as one JSON array (each
#: ``[stream, offset, data, tags, time]``, data and tags embedded as they were encoded;
#: ``->`` gives back an element's JSON text as it was written).
_INSERT_ROWS = (
    "INSERT INTO publications (stream, offset, data, tags, time) "
    "SELECT value ->> 0, value ->> 1, value -> 2, nullif(value -> 3, 'null'), value ->> 4 "
    "FROM json_each(?)"
)


def _rows(publications: list[tuple[int, int, bytes, bytes | None, float]]) -> str:
    """The JSON array :data:`_INSERT_ROWS` reads."""
    fragment = orjson.Fragment
    return orjson.dumps(
        [
            [stream, offset, fragment(data), None if tags is None else fragment(tags), when]
            for stream, offset, data, tags, when in publications
        ]
    ).decode()


class StoreError(Exception):
    """The data file cannot be used (damaged, unreadable, another program's); the message
    names the file and what is wrong."""


#: One stored publication: its offset, data (JSON text), tags (JSON text or None) and time.
Row = tuple[int, str, str | None, float]


@dataclass(frozen=True, slots=True)
class StoredStream:
    """A stream as the file has it."""

    id: int
    channel: str
    epoch: str
    top: int
    touched: float
    keep: int
    ttl: float
    meta_ttl: float


@dataclass(slots=True)
class WriteBatch:
    """What one transaction writes, applied in this order."""

    #: Streams forgotten (their row and publications deleted).
    forgets: list[int] = field(default_factory=list)
    #: The void epoch, when it changed (a stream was forgotten).
    void_epoch: str | None = None
    #: New streams: (id, channel, epoch, touched, keep, ttl, meta_ttl).
    new_streams: list[tuple[int, str, str, float, int, float, float]] = field(default_factory=list)
    #: Publications: (stream id, offset, data, tags, time).
    publications: list[tuple[int, int, bytes, bytes | None, float]] = field(default_factory=list)
    #: Streams' rows brought up to date: (top, touched, keep, ttl, meta_ttl, stream id).
    #: Applied after the publications and before the trims.
    tops: list[tuple[int, float, int, float, float, int]] = field(default_factory=list)
    #: Retention: (stream id, delete offsets up to this, delete times before this).
    trims: list[tuple[int, int, float]] = field(default_factory=list)
    #: The node's bytes on disk (``engine.max_disk_bytes``): past it, the oldest
    #: publications of every channel go first (at most :data:`DISK_TRIM_ROWS`).
    disk_budget: int | None = None

    @property
    def upkeep(self) -> bool:
        """Anything besides publications to write."""
        return bool(self.forgets or self.trims or self.tops or self.void_epoch or self.disk_budget)


@dataclass(frozen=True, slots=True)
class Loaded:
    """What the file holds at start: its streams and void epoch (None: a new file)."""

    streams: list[StoredStream]
    void_epoch: str | None


class SqliteStore:
    """One data file: a writer connection and a reader connection, each used by one thread."""

    def __init__(self, path: Path, sync: str = "normal") -> None:
        if sync not in SYNC_MODES:
            raise ValueError(f"sync must be one of {', '.join(SYNC_MODES)}, not {sync!r}")
        self.path = path
        #: The ``[engine] sync`` setting: ``normal`` or ``full``.
        self.sync = sync
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._reader_thread: int | None = None
        #: The lock file held while the store is open: one orbiter per data file.
        self._lock = FileLock(path, "data file", StoreError)

    # ------------------------------------------------------------ writer thread

    def open(self) -> Loaded:
        """Open (or create) the file, check it, and read its streams. :class:`StoreError`."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the data directory {self.path.parent}: {exc}"
            ) from None
        self._lock.take()
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0.0
            )
        except sqlite3.Error as exc:
            self._lock.release()
            raise StoreError(f"cannot open the data file {self.path}: {exc}") from None
        try:
            loaded = self._prepare(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            self._lock.release()
            raise StoreError(
                f"the data file {self.path} is damaged or not an orbiter data file ({exc}); "
                "move it away to start with empty history, or restore it from a backup"
            ) from None
        self._writer = conn
        return loaded

    def _prepare(self, conn: sqlite3.Connection) -> Loaded:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.DatabaseError(f"cannot use WAL journal mode (got {mode!r})")
        conn.execute(f"PRAGMA synchronous = {SYNC_MODES[self.sync]}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if version == 0 and tables - {"meta", "streams", "publications"}:
            raise sqlite3.DatabaseError("it holds tables orbiter did not make")
        if version not in (0, SCHEMA_VERSION):
            raise sqlite3.DatabaseError(
                f"schema version {version}, this orbiter reads version {SCHEMA_VERSION}"
            )
        conn.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        # A row's top and touched may be older than its newest publication (see above).
        streams = [
            StoredStream(*row)
            for row in conn.execute(
                "SELECT id, channel, epoch, "
                "max(top, coalesce((SELECT max(offset) FROM publications WHERE stream = id), 0)), "
                "max(touched, coalesce((SELECT time FROM publications WHERE stream = id "
                "ORDER BY offset DESC LIMIT 1), 0)), keep, ttl, meta_ttl FROM streams"
            )
        ]
        row = conn.execute("SELECT value FROM meta WHERE key = 'void_epoch'").fetchone()
        return Loaded(streams, None if row is None else str(row[0]))

    def write(self, batch: WriteBatch) -> None:
        """Apply ``batch`` in one transaction; sqlite3.Error (rolled back) if it fails.

        Publications alone (the usual group commit) are one statement, which SQLite
        runs as its own transaction: the writer thread gives up and takes back the
        GIL once for it, not once per row and for BEGIN and COMMIT, so it seldom
        waits for the event loop's thread (measured: ``docs/benchmarks.md``).
        """
        conn = self._writer
        assert conn is not None, "open() first"
        rows = _rows(batch.publications) if batch.publications else None
        if not (batch.upkeep or batch.new_streams):
            if rows is not None:
                conn.execute(_INSERT_ROWS, (rows,))
            return
        try:
            conn.execute("BEGIN")
            if batch.forgets:
                ids = [(stream,) for stream in batch.forgets]
                conn.executemany("DELETE FROM publications WHERE stream = ?", ids)
                conn.executemany("DELETE FROM streams WHERE id = ?", ids)
            if batch.void_epoch is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('void_epoch', ?)",
                    (batch.void_epoch,),
                )
            if batch.new_streams:
                conn.executemany(
                    "INSERT INTO streams (id, channel, epoch, top, touched, keep, ttl, meta_ttl) "
                    "VALUES (?, ?, ?, 0, ?, ?, ?, ?)",
                    batch.new_streams,
                )
            if rows is not None:
                conn.execute(_INSERT_ROWS, (rows,))
            if batch.tops:
                conn.executemany(
                    "UPDATE streams SET top = max(top, ?), touched = ?, keep = ?, ttl = ?, "
                    "meta_ttl = ? WHERE id = ?",
                    batch.tops,
                )
            if batch.trims:
                conn.executemany(
                    "DELETE FROM publications WHERE stream = ? AND (offset <= ? OR time < ?)",
                    batch.trims,
                )
            if batch.disk_budget is not None:
                self._fit(conn, batch.disk_budget)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                # SQLite may have rolled back on its own (a full disk, an I/O error).
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _fit(conn: sqlite3.Connection, budget: int) -> None:
        """Delete the oldest publications (the lowest rowids: the order written) while the
        pages in use are more than ``budget`` bytes, at most :data:`DISK_TRIM_ROWS` at a
        time; each stream's row keeps the top of what goes."""
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        used = conn.execute(
            "SELECT (page_count - freelist_count) * ? "
            "FROM pragma_page_count, pragma_freelist_count",
            (page_size,),
        ).fetchone()[0]
        if used <= budget:
            return
        rows = conn.execute("SELECT count(*) FROM publications").fetchone()[0]
        if not rows:
            return
        # Rows' share of the excess, rounded up: the next sweep goes on if it was not enough.
        count = min(DISK_TRIM_ROWS, max(1, -(-rows * (used - budget) // used)))
        last = conn.execute(
            "SELECT rowid FROM publications ORDER BY rowid LIMIT 1 OFFSET ?", (count - 1,)
        ).fetchone()
        if last is None:
            return
        conn.execute(
            "UPDATE streams SET top = max(top, (SELECT max(offset) FROM publications "
            "WHERE stream = streams.id)) WHERE id IN "
            "(SELECT DISTINCT stream FROM publications WHERE rowid <= ?)",
            last,
        )
        conn.execute("DELETE FROM publications WHERE rowid <= ?", last)

    def compact(self) -> tuple[int, int]:
        """Give the file's free pages back to the system (``VACUUM``), with no server on
        it (:class:`StoreError` if one is, or the file is damaged): its size before and
        after, in bytes."""
        return compact(self.path, self._lock, "data file", StoreError)

    def close(self) -> None:
        """Checkpoint the log into the file and close the writer connection."""
        conn, self._writer = self._writer, None
        if conn is not None:
            # A reader holds the log, or the disk is full: the next start replays it.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()
        self._lock.release()

    # ------------------------------------------------------------ reader thread

    def open_reader(self) -> None:
        """Open the reader connection (after :meth:`open`), in the thread that reads."""
        try:
            self._reader = sqlite3.connect(
                self.path.resolve().as_uri() + "?mode=ro",  # as_uri() escapes ? # % and spaces
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the data file {self.path} to read: {exc}") from None
        self._reader_thread = threading.get_ident()

    def read_after(self, stream: int, after: int, upto: int) -> list[Row]:
        """The stored publications of ``stream`` with ``after < offset <= upto``, oldest first."""
        return self._rows(
            "SELECT offset, data, tags, time FROM publications "
            "WHERE stream = ? AND offset > ? AND offset <= ? ORDER BY offset",
            (stream, after, upto),
        )

    def _rows(self, sql: str, params: tuple[int, ...]) -> list[Row]:
        conn = self._reader
        assert conn is not None, "open_reader() first"
        assert self._reader_thread == threading.get_ident(), "read in the reader's thread"
        return conn.execute(sql, params).fetchall()

    def close_reader(self) -> None:
        conn, self._reader = self._reader, None
        if conn is not None:
            conn.close()
