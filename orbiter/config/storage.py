"""Settings of the engine: which one keeps channel streams, and where and how it stores them.

``orbiter.config.settings`` reads the ``[engine]`` table through
:func:`engine_settings_from`, which checks every key and raises
:class:`SettingsError` naming the key; ``docs/config.md`` lists them.

The SQLite engine is the default, and needs a data directory: ``orbiter
serve`` uses :data:`DEFAULT_DATA_DIR` (in the directory it is started in)
when the config names none. A node built in a program (tests, an embedding
app) from a config without ``data_dir`` keeps history in memory, so that
nothing writes to whatever directory the program runs in unasked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orbiter.config.values import SettingsError, kinds_of, scalars

#: The values of ``engine.kind``.
ENGINE_KINDS = ("sqlite", "memory", "redis")
#: The schemes of ``engine.url`` (redis-py's: TCP, TLS, a Unix socket).
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
#: The schemes of a Redis Cluster's ``engine.url`` (one node of it; the others are found).
REDIS_CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
#: The values of ``engine.sync`` (``PRAGMA synchronous`` in WAL mode).
SYNC_MODES = ("normal", "full")
#: The data file's name in ``engine.data_dir``.
DATA_FILE = "orbiter.sqlite3"
#: The STOMP broker's persistent queue messages, in ``engine.data_dir`` beside it.
QUEUE_FILE = "stomp-queues.sqlite3"
#: Where ``orbiter serve`` keeps the data file when the config names no ``data_dir``:
#: relative to the directory it is started in (as every relative path of the config).
DEFAULT_DATA_DIR = "orbiter-data"


#: The longest ``engine.commit_wait``: the loop must stay responsive.
MAX_COMMIT_WAIT = 0.01


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Where channel streams (epochs, offsets, history) are kept."""

    #: ``sqlite``: in a file under ``data_dir``, kept across restarts and crashes;
    #: ``memory``: in this process only (a restart forgets them); ``redis``: in the
    #: Redis at ``url``, shared by every node that names it.
    kind: str = "sqlite"
    #: The Redis of ``kind = "redis"``: ``redis://host:port/db`` (``rediss://`` for TLS,
    #: ``unix:///path?db=0`` for a socket); several, separated by commas, shard channels;
    #: ``redis+cluster://host:port`` (``rediss+cluster://`` for TLS): a Redis Cluster.
    url: str = ""
    #: The directory of the SQLite data file (created on first start); a relative
    #: path is taken from the directory orbiter is started in. Empty: not configured
    #: (``orbiter serve`` then uses :data:`DEFAULT_DATA_DIR`; a node built in a
    #: program keeps history in memory).
    data_dir: str = ""
    #: ``normal``: a power loss may lose the last commits since the log was last
    #: synced (a process crash loses nothing acknowledged); ``full``: the log is
    #: synced at every commit, so a power loss loses nothing acknowledged either.
    sync: str = "normal"
    #: Publications of each channel kept in memory (its newest); older pages are
    #: read from the file.
    memory_window: int = 128
    #: Seconds the event loop may wait, once an iteration, for the engine to confirm a
    #: read's publications (0..0.01; 0: never waits): SQLite's group commit, or Redis's
    #: answer to the pipeline (``engine/redis_publishing.py``); confirmed within it, they
    #: are answered in the read's own loop iteration. Never longer, whatever the disk or
    #: Redis does.
    commit_wait: float = 0.0002
    #: Bytes of the data file in use at most (0: no bound): past it, every few
    #: seconds, the oldest publications of every channel are deleted first (a client
    #: recovering past them is told it cannot); epochs and offsets stay.
    max_disk_bytes: int = 0
    #: ``kind`` was named in the config (not left to its default): ``--workers N`` then
    #: uses that engine or refuses, rather than starting a private Redis.
    kind_given: bool = field(default=False, compare=False)

    @property
    def durable(self) -> bool:
        """History goes to a data file: the SQLite engine, with a data directory."""
        return self.kind == "sqlite" and bool(self.data_dir)

    @property
    def data_file(self) -> Path:
        return Path(self.data_dir) / DATA_FILE

    @property
    def queue_file(self) -> Path:
        """Where STOMP ``persistent:true`` queue messages are kept (when :attr:`durable`)."""
        return Path(self.data_dir) / QUEUE_FILE


def engine_settings_from(table: dict[str, Any]) -> EngineSettings:
    kinds = kinds_of(EngineSettings)
    del kinds["kind_given"]  # not a key of the table
    settings = EngineSettings(**scalars(table, "engine", kinds), kind_given="kind" in table)
    if settings.kind not in ENGINE_KINDS:
        raise SettingsError(
            f"'engine.kind' must be one of {', '.join(ENGINE_KINDS)}, not {settings.kind!r}"
        )
    if (
        settings.kind == "redis"
        and not settings.url.strip().startswith(REDIS_CLUSTER_SCHEMES)
        and not all(part.strip().startswith(REDIS_SCHEMES) for part in settings.url.split(","))
    ):
        raise SettingsError(
            "'engine.url' must be a Redis URL (redis://host:port/db, or "
            f"redis+cluster://host:port) when 'engine.kind' is redis, not {settings.url!r}"
        )
    if settings.sync not in SYNC_MODES:
        raise SettingsError(
            f"'engine.sync' must be one of {', '.join(SYNC_MODES)}, not {settings.sync!r}"
        )
    if "data_dir" in table and (not settings.data_dir.strip() or "\0" in settings.data_dir):
        raise SettingsError("'engine.data_dir' must be a directory path")
    if settings.memory_window <= 0:
        raise SettingsError("'engine.memory_window' must be positive")
    if not 0 <= settings.commit_wait <= MAX_COMMIT_WAIT:
        raise SettingsError(
            f"'engine.commit_wait' must be between 0 and {MAX_COMMIT_WAIT} seconds "
            f"(0: the loop never waits for a commit), not {settings.commit_wait!r}"
        )
    if settings.max_disk_bytes < 0:
        raise SettingsError("'engine.max_disk_bytes' must not be negative (0: no bound)")
    return settings
