"""The file of the STOMP broker's persistent queue messages: its schema, blocking reads and writes.

Nothing here knows asyncio: :mod:`.durable_queue` calls it from its writer
thread. The file (``stomp-queues.sqlite3`` in ``engine.data_dir``) has one
table, one row per persistent message not yet consumed: its number (the
order messages were accepted in, which is each queue's order), the queue,
the headers passed on to consumers (JSON), the body, the wall-clock time it
expires (NULL: never) and the client address whose share it counts in.
:meth:`QueueFile.write` inserts and deletes rows in one transaction (a group
commit). It is a WAL database with the engine's ``sync`` setting, so a
process crash loses no committed row; what a power loss can lose is the
engine file's (``engine/sqlite_store.py``).
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import orjson

from orbiter.engine.sqlite_file import SYNC_MODES, FileLock, compact

#: The schema this code reads and writes (``PRAGMA user_version``).
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    headers BLOB NOT NULL,
    body BLOB NOT NULL,
    expires REAL,
    sender TEXT NOT NULL
);
"""


class QueueFileError(Exception):
    """The queue file cannot be used; the message names it and what is wrong."""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One persistent message as the file has it."""

    key: int
    queue: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    #: Wall-clock seconds since the epoch when it expires (``inf``: never).
    expires: float
    sender: str

    def row(self) -> tuple[int, str, bytes, bytes, float | None, str]:
        headers = orjson.dumps([list(pair) for pair in self.headers])
        expires = None if math.isinf(self.expires) else self.expires
        return (self.key, self.queue, headers, self.body, expires, self.sender)


class QueueFile:
    """One queue file, used by one thread (the writer thread of :mod:`.durable_queue`)."""

    def __init__(self, path: Path, sync: str = "normal") -> None:
        if sync not in SYNC_MODES:
            raise ValueError(f"sync must be one of {', '.join(SYNC_MODES)}, not {sync!r}")
        self.path = path
        self.sync = sync
        self._conn: sqlite3.Connection | None = None
        #: Two servers on one file would deliver each message twice.
        self._lock = FileLock(path, "queue file", QueueFileError)

    def open(self) -> list[StoredMessage]:
        """Open (or create) the file and read its messages, oldest first (or raise
        :class:`QueueFileError`)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock.take()
        except OSError as exc:
            raise QueueFileError(f"cannot use the queue file {self.path}: {exc}") from None
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0.0
            )
        except sqlite3.Error as exc:
            self._lock.release()
            raise QueueFileError(f"cannot open the queue file {self.path}: {exc}") from None
        try:
            messages = self._prepare(conn)
        except (sqlite3.DatabaseError, orjson.JSONDecodeError, ValueError, TypeError) as exc:
            conn.close()
            self._lock.release()
            raise QueueFileError(
                f"the queue file {self.path} is damaged or not an orbiter queue file ({exc}); "
                "move it away to start with empty queues, or restore it from a backup"
            ) from None
        self._conn = conn
        return messages

    def _prepare(self, conn: sqlite3.Connection) -> list[StoredMessage]:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.DatabaseError(f"cannot use WAL journal mode (got {mode!r})")
        conn.execute(f"PRAGMA synchronous = {SYNC_MODES[self.sync]}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if version == 0 and tables - {"messages"}:
            raise sqlite3.DatabaseError("it holds tables orbiter did not make")
        if version not in (0, SCHEMA_VERSION):
            raise sqlite3.DatabaseError(
                f"schema version {version}, this orbiter reads version {SCHEMA_VERSION}"
            )
        conn.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        return [
            StoredMessage(
                key,
                queue,
                tuple((str(name), str(value)) for name, value in orjson.loads(headers)),
                bytes(body),
                math.inf if expires is None else float(expires),
                sender,
            )
            for key, queue, headers, body, expires, sender in conn.execute(
                "SELECT id, queue, headers, body, expires, sender FROM messages ORDER BY id"
            )
        ]

    def write(self, inserts: list[StoredMessage], deletes: list[int]) -> None:
        """Insert and delete rows in one transaction; sqlite3.Error (rolled back) if it fails."""
        conn = self._conn
        assert conn is not None, "open() first"
        try:
            conn.execute("BEGIN")
            if inserts:
                conn.executemany(
                    "INSERT INTO messages (id, queue, headers, body, expires, sender) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [message.row() for message in inserts],
                )
            if deletes:
                conn.executemany("DELETE FROM messages WHERE id = ?", [(k,) for k in deletes])
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    def compact(self) -> tuple[int, int]:
        """Give the file's free pages back to the system, with no server on it
        (:class:`QueueFileError` if one is, or the file is missing or damaged): its size
        before and after, in bytes."""
        return compact(self.path, self._lock, "queue file", QueueFileError)

    def close(self) -> None:
        """Checkpoint the log into the file, close it and drop the lock."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()
        self._lock.release()
