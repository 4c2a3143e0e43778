"""What one SQLite transaction writes: a :class:`WriteBatch`, made by the engine on the event
loop and applied by the store on the writer thread.

A module of its own so that it is compiled (``orbiter/version.py``): the loop makes one
and reads and writes its attributes every transaction, which a dataclass in the store's
module (interpreted: tests replace its methods) made cost about 1,100 instructions a
publication at 8 a commit (``valgrind --tool=callgrind`` on
``tests/support/profile_publish_path.py --data-dir``).
"""

from __future__ import annotations

#: One publication as the engine hands it over: (stream id, offset, data, tags, time),
#: data a string (encoded with its row, ``sqlite_store.encode_rows``) or encoded as
#: JSON (bytes), tags encoded as JSON.
Publication = tuple[int, int, str | bytes, bytes | None, float]


class WriteBatch:
    """What one transaction writes, applied in this order (``SqliteStore.write``)."""

    def __init__(self, void_epoch: str | None = None) -> None:
        #: Streams forgotten (their row deleted; their commit rows go with ``deletes``).
        self.forgets: list[int] = []
        #: The void epoch, when it changed (a stream was forgotten).
        self.void_epoch = void_epoch
        #: New streams: (id, channel, epoch, touched, keep, ttl, meta_ttl).
        self.new_streams: list[tuple[int, str, str, float, int, float, float]] = []
        #: The commit row's id (0: none), time and publications; ``keys`` packed
        #: (``sqlite_index.pack_keys``) in the order of ``publications``.
        self.commit = 0
        self.time = 0.0
        self.keys = b""
        self.publications: list[Publication] = []
        #: Streams' rows brought up to date: (top, touched, keep, ttl, meta_ttl, stream
        #: id). Applied before the deletes.
        self.tops: list[tuple[int, float, int, float, float, int]] = []
        #: Commit rows nothing is kept of any more.
        self.deletes: list[int] = []
        #: Runs of small commit rows, each merged into its last row (after the deletes).
        self.merges: list[list[int]] = []
        #: The node's bytes on disk (``engine.max_disk_bytes``): past it, the oldest
        #: commit rows go first (at most ``sqlite_store.DISK_TRIM_ROWS``).
        self.disk_budget: int | None = None
        #: Set by ``SqliteStore.write``: the newest commit row it deleted to fit the
        #: disk budget (0: none).
        self.deleted_through = 0

    @property
    def upkeep(self) -> bool:
        """Anything besides publications to write."""
        return bool(
            self.forgets
            or self.deletes
            or self.merges
            or self.tops
            or self.void_epoch
            or self.disk_budget
        )
