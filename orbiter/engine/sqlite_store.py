"""The SQLite file of the SQLite engine: its schema, and its blocking reads and writes.

Nothing here knows asyncio. :class:`SqliteStore` is used from two threads
the engine (``engine/sqlite.py``) owns: the writer thread calls
:meth:`SqliteStore.open` and :meth:`SqliteStore.write` (one transaction per
:class:`WriteBatch`: a group commit), the reader thread
:meth:`SqliteStore.open_reader` and the ``read_*`` methods, each on its own
connection (WAL lets the reader see the last commit while the writer writes).

The schema keeps, per channel stream, its epoch and top offset (kept longer
than its publications, so a drained channel still answers recovery
truthfully) and the policy it was last published with; and **one row per
group commit** (``commits``: its id, time, keys and publications), not a row
per publication: the publications as one JSON array (each ``[stream,
offset, data, tags, time]``), and their keys (stream id and offset of each,
packed: ``engine/sqlite_index.py``), which is all a start reads to rebuild
the in-memory index saying which row holds each stored offset. One row
append per transaction, where a row and an index entry per publication
dirtied a page per channel (measured: ``docs/benchmarks.md``). A row is
deleted once none of its publications is kept (retention, forgotten
streams) or, oldest first, past ``max_disk_bytes``. A stream's row is not
updated by every transaction: its top is the larger of the row's and its
newest stored offset, and the row is brought up to date whenever its
publications are let go (so a drained stream's row has it) and at a clean
stop. Files of schema version 2 (a row per publication) are converted at
start.

Durability: in WAL mode a commit is in the log file when :meth:`write`
returns, so a process crash (``kill -9``) loses nothing committed. With
``synchronous = NORMAL`` the log is synced to the disk only at checkpoints,
so a power loss or OS crash can lose the transactions since the last
checkpoint (never corrupt the file); ``FULL`` syncs the log at every commit
and loses nothing committed, at the cost of one ``fsync`` per group commit.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from array import array
from dataclasses import dataclass
from pathlib import Path

import orjson

# (a compiled module of their own: the event loop builds one a transaction)
from orbiter.engine.sqlite_batch import Publication as Publication
from orbiter.engine.sqlite_batch import WriteBatch as WriteBatch
from orbiter.engine.sqlite_file import SYNC_MODES, FileLock, compact
from orbiter.engine.sqlite_index import CommitIndex, StreamRows, pack_keys, unpack_keys

log = logging.getLogger("orbiter.engine.sqlite")

#: The schema this code reads and writes (``PRAGMA user_version``).
SCHEMA_VERSION = 3
#: The older schema converted at start: a row per publication, indexed by (stream, offset).
ROW_PER_PUBLICATION_VERSION = 2

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
CREATE TABLE IF NOT EXISTS commits (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    keys BLOB NOT NULL,
    rows BLOB NOT NULL
);
"""

#: Commit rows deleted at most in one transaction to fit ``engine.max_disk_bytes``.
DISK_TRIM_ROWS = 5_000
#: Publications per commit row when a version-2 file is converted.
MIGRATION_ROWS = 1_000


def encode_rows(publications: list[Publication]) -> bytes:
    """A commit row's publications: one JSON array, data and tags embedded as encoded
    (a string, the data of most publications, is encoded with the array: one call for
    the row, in the writer thread, instead of one a publication on the event loop)."""
    fragment = orjson.Fragment
    return orjson.dumps(
        [
            [
                stream,
                offset,
                data if type(data) is str else fragment(data),
                None if tags is None else fragment(tags),
                when,
            ]
            for stream, offset, data, tags, when in publications
        ]
    )


_INSERT_COMMIT = "INSERT INTO commits (id, time, keys, rows) VALUES (?, ?, ?, ?)"


def _utf8(text: str | bytes) -> bytes:
    """A version-2 row's JSON column (text, or bytes) as bytes."""
    return text.encode() if isinstance(text, str) else text


class StoreError(Exception):
    """The data file cannot be used (damaged, unreadable, another program's); the message
    names the file and what is wrong."""


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
class Loaded:
    """What the file holds at start: its streams (tops and times counting their stored
    publications), void epoch (None: a new file), the index of its commit rows and
    each stream's rows in it, and the next commit row's id."""

    streams: list[StoredStream]
    void_epoch: str | None
    index: CommitIndex
    rows: dict[int, StreamRows]
    next_commit: int
    #: One more than the largest stream id the file names (streams or commit rows).
    next_stream: int


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
        if version == 0 and tables - {"meta", "streams", "commits"}:
            raise sqlite3.DatabaseError("it holds tables orbiter did not make")
        if version not in (0, ROW_PER_PUBLICATION_VERSION, SCHEMA_VERSION):
            raise sqlite3.DatabaseError(
                f"schema version {version}, this orbiter reads versions "
                f"{ROW_PER_PUBLICATION_VERSION} and {SCHEMA_VERSION}"
            )
        conn.execute("BEGIN")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            if version == ROW_PER_PUBLICATION_VERSION:
                self._convert(conn)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return self._load(conn)

    @staticmethod
    def _convert(conn: sqlite3.Connection) -> None:
        """A version-2 file's publications into commit rows (of :data:`MIGRATION_ROWS`
        each, in the order written), inside the caller's transaction."""
        log.info("converting the data file to schema version %d (a row per commit)", SCHEMA_VERSION)
        source = conn.execute(
            "SELECT stream, offset, data, tags, time FROM publications ORDER BY rowid"
        )
        commit = 0
        while chunk := source.fetchmany(MIGRATION_ROWS):
            commit += 1
            keys = array("q")
            publications: list[Publication] = []
            for stream, offset, data, tags, when in chunk:
                keys.append(stream)
                keys.append(offset)
                publications.append(
                    (stream, offset, _utf8(data), None if tags is None else _utf8(tags), when)
                )
            conn.execute(
                "INSERT INTO commits (id, time, keys, rows) VALUES (?, ?, ?, ?)",
                (
                    commit,
                    max(p[4] for p in publications),
                    pack_keys(keys),
                    encode_rows(publications),
                ),
            )
        conn.execute("DROP TABLE publications")

    @staticmethod
    def _load(conn: sqlite3.Connection) -> Loaded:
        """The streams, and the index rebuilt from the commit rows' keys."""
        stored = conn.execute(
            "SELECT id, channel, epoch, top, touched, keep, ttl, meta_ttl FROM streams"
        ).fetchall()
        rows = {row[0]: StreamRows() for row in stored}
        index = CommitIndex()
        next_commit = 1
        next_stream = max(rows, default=0) + 1
        for commit, when, keys in conn.execute("SELECT id, time, keys FROM commits ORDER BY id"):
            unpacked = unpack_keys(keys)
            index.load(commit, when, unpacked, rows)
            next_commit = commit + 1
            if unpacked:
                next_stream = max(next_stream, max(unpacked[::2]) + 1)
        streams = []
        times = index.times
        for id_, channel, epoch, top, touched, keep, ttl, meta_ttl in stored:
            mine = rows[id_]
            if mine.commits:
                top = max(top, mine.last)
                touched = max(touched, times[mine.commits[-1]])
            streams.append(StoredStream(id_, channel, epoch, top, touched, keep, ttl, meta_ttl))
        void = conn.execute("SELECT value FROM meta WHERE key = 'void_epoch'").fetchone()
        return Loaded(
            streams,
            None if void is None else str(void[0]),
            index,
            rows,
            next_commit,
            next_stream,
        )

    def write(self, batch: WriteBatch) -> None:
        """Apply ``batch`` in one transaction; sqlite3.Error (rolled back) if it fails.
        Sets :attr:`WriteBatch.deleted_through`.

        Publications alone (the usual group commit) are one statement, which SQLite
        runs as its own transaction: the writer thread gives up and takes back the
        GIL once for it, not once per statement and for BEGIN and COMMIT, so it
        seldom waits for the event loop's thread (measured: ``docs/benchmarks.md``).
        """
        conn = self._writer
        assert conn is not None, "open() first"
        row = (
            (batch.commit, batch.time, batch.keys, encode_rows(batch.publications))
            if batch.commit
            else None
        )
        if not (batch.upkeep or batch.new_streams):
            if row is not None:
                conn.execute(_INSERT_COMMIT, row)
            return
        try:
            conn.execute("BEGIN")
            if batch.forgets:
                conn.executemany(
                    "DELETE FROM streams WHERE id = ?", [(stream,) for stream in batch.forgets]
                )
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
            if row is not None:
                conn.execute(_INSERT_COMMIT, row)
            if batch.tops:
                conn.executemany(
                    "UPDATE streams SET top = max(top, ?), touched = ?, keep = ?, ttl = ?, "
                    "meta_ttl = ? WHERE id = ?",
                    batch.tops,
                )
            if batch.deletes:
                conn.execute(
                    "DELETE FROM commits WHERE id IN (SELECT value FROM json_each(?))",
                    (orjson.dumps(batch.deletes).decode(),),
                )
            for group in batch.merges:
                self._merge(conn, group)
            deleted = 0 if batch.disk_budget is None else self._fit(conn, batch.disk_budget)
            conn.execute("COMMIT")
            batch.deleted_through = deleted
        except BaseException:
            if conn.in_transaction:
                # SQLite may have rolled back on its own (a full disk, an I/O error).
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _merge(conn: sqlite3.Connection, group: list[int]) -> None:
        """Merge the commit rows ``group`` names (those still in the file) into one with
        the id of its last: their keys and publications one after the other."""
        found = conn.execute(
            "SELECT time, keys, rows FROM commits "
            "WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id",
            (orjson.dumps(group).decode(),),
        ).fetchall()
        if not found:
            return
        # Each row's publications are one JSON array: their elements, joined, are one too.
        parts = [bytes(rows)[1:-1] for _, _, rows in found if len(rows) > 2]
        conn.execute(
            "DELETE FROM commits WHERE id IN (SELECT value FROM json_each(?))",
            (orjson.dumps(group[:-1]).decode(),),
        )
        conn.execute(
            "INSERT OR REPLACE INTO commits (id, time, keys, rows) VALUES (?, ?, ?, ?)",
            (
                group[-1],
                max(when for when, _, _ in found),
                b"".join(bytes(keys) for _, keys, _ in found),
                b"[" + b",".join(parts) + b"]",
            ),
        )

    @staticmethod
    def _fit(conn: sqlite3.Connection, budget: int) -> int:
        """Delete the oldest commit rows while the pages in use are more than ``budget``
        bytes, at most :data:`DISK_TRIM_ROWS` at a time; each stream's row keeps the top
        of what goes. Returns the newest row deleted (0: none)."""
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        used = conn.execute(
            "SELECT (page_count - freelist_count) * ? "
            "FROM pragma_page_count, pragma_freelist_count",
            (page_size,),
        ).fetchone()[0]
        if used <= budget:
            return 0
        rows = conn.execute("SELECT count(*) FROM commits").fetchone()[0]
        if not rows:
            return 0
        # Rows' share of the excess, rounded up: the next sweep goes on if it was not enough.
        count = min(DISK_TRIM_ROWS, max(1, -(-rows * (used - budget) // used)))
        last_row = conn.execute(
            "SELECT id FROM commits ORDER BY id LIMIT 1 OFFSET ?", (count - 1,)
        ).fetchone()
        if last_row is None:
            return 0
        last = int(last_row[0])
        tops: dict[int, int] = {}
        for (keys,) in conn.execute("SELECT keys FROM commits WHERE id <= ?", (last,)):
            unpacked = unpack_keys(keys)
            for i in range(0, len(unpacked), 2):
                stream, offset = unpacked[i], unpacked[i + 1]
                if offset > tops.get(stream, 0):
                    tops[stream] = offset
        conn.executemany(
            "UPDATE streams SET top = max(top, ?) WHERE id = ?",
            [(top, stream) for stream, top in tops.items()],
        )
        conn.execute("DELETE FROM commits WHERE id <= ?", (last,))
        return last

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

    def read_commits(self, commits: list[int]) -> list[bytes]:
        """The publications (:func:`encode_rows`) of the rows holding what these commits
        wrote (each the first row at or after its id: a row merged since is found in
        the row it went into), in their order."""
        conn = self._reader
        assert conn is not None, "open_reader() first"
        assert self._reader_thread == threading.get_ident(), "read in the reader's thread"
        return [
            row[1]
            for row in conn.execute(
                "SELECT DISTINCT c.id, c.rows FROM json_each(?) AS j JOIN commits AS c "
                "ON c.id = (SELECT min(id) FROM commits WHERE id >= j.value) ORDER BY c.id",
                (orjson.dumps(commits).decode(),),
            )
        ]

    def close_reader(self) -> None:
        conn, self._reader = self._reader, None
        if conn is not None:
            conn.close()
