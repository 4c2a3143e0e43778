"""What every SQLite file orbiter keeps shares: its lock file and its compaction.

The channel store (``sqlite_store.py``) and the STOMP broker's queue file
(``services/stomp/queue_file.py``) each hold ``<file>.lock`` with ``flock``
while open, so that a second orbiter on the same data directory is refused
(it would hand out the same offsets again, or deliver a message twice); the
system drops the lock when the process dies. ``orbiter compact`` takes the
same lock, so it never runs under a server. Errors are raised as the
caller's own exception class, naming the file (``what``: "data file",
"queue file").
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path

#: ``[engine] sync`` values and the ``PRAGMA synchronous`` each sets.
SYNC_MODES = {"normal": "NORMAL", "full": "FULL"}


class FileLock:
    """``<file>.lock``, held with ``flock`` between :meth:`take` and :meth:`release`."""

    def __init__(self, path: Path, what: str, error: type[Exception]) -> None:
        self._path = path
        self._what = what
        self._error = error
        self._fd: int | None = None

    def take(self) -> None:
        """Hold the lock, or raise ``error`` saying another orbiter process holds it."""
        lock_path = self._path.with_name(self._path.name + ".lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise self._error(f"cannot open the lock file {lock_path}: {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise self._error(
                f"the {self._what} {self._path} is in use by another orbiter process (it "
                f"holds {lock_path.name}); give each server its own engine.data_dir"
            ) from None
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock


def compact(path: Path, lock: FileLock, what: str, error: type[Exception]) -> tuple[int, int]:
    """Give ``path``'s free pages back to the system (``VACUUM``, then the log
    checkpointed and emptied), under ``lock`` (``error`` if a server holds it, or the
    file is missing or damaged): its size before and after, in bytes."""
    if not path.exists():
        raise error(f"there is no {what} {path}")
    lock.take()
    try:
        before = path.stat().st_size
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        return before, path.stat().st_size
    except sqlite3.DatabaseError as exc:
        raise error(f"cannot compact the {what} {path}: {exc}") from None
    finally:
        lock.release()
