"""A floor under the SQLite engine's cost per publication: the store's own group commit
alone, in one thread, with no event loop, no hand-off and no HTTP.

Each transaction is what the engine's writer thread writes for the usual group commit
(``SqliteStore.write`` of a :class:`WriteBatch` with publications only: one commit row,
its packed keys and its JSON array of publications), ``--per-commit`` publications of
``--size`` bytes each over 2,000 channels, as ``orbiter bench many-channels`` makes at
its depth of 8. It prints the process's CPU time per publication and per commit, best
of ``--repeat``; ``--exclusive`` also tries ``PRAGMA locking_mode = EXCLUSIVE`` (which
the engine does not use: it would lock every other program out of the live file).

    python -m tests.support.sqlite_commit_floor --per-commit 8
"""

from __future__ import annotations

import argparse
import tempfile
import time
from array import array
from pathlib import Path

from orbiter.engine.sqlite_index import pack_keys
from orbiter.engine.sqlite_store import SqliteStore, WriteBatch

CHANNELS = 2_000


def cpu_per_commit(per_commit: int, commits: int, size: int, exclusive: bool) -> float:
    """CPU µs per commit of ``per_commit`` publications, ``commits`` commits in a fresh file."""
    data = '{"text":"' + "x" * max(0, size - 11) + '"}'
    with tempfile.TemporaryDirectory(prefix="orbiter-sqlite-floor-") as directory:
        store = SqliteStore(Path(directory) / "orbiter.sqlite3")
        store.open()
        if exclusive:
            assert store._writer is not None
            store._writer.execute("PRAGMA locking_mode = EXCLUSIVE")
        offset = 0
        batches = []
        for commit in range(1, commits + 1):
            batch = WriteBatch()
            batch.commit, batch.time = commit, time.time()
            keys = array("q")
            for _ in range(per_commit):
                offset += 1
                stream = offset % CHANNELS + 1
                batch.publications.append((stream, offset, data, None, batch.time))
                keys.extend((stream, offset))
            batch.keys = pack_keys(keys)
            batches.append(batch)
        started = time.process_time()
        for batch in batches:
            store.write(batch)
        spent = time.process_time() - started
        store.close()
    return spent / commits * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-commit", type=int, default=8)
    parser.add_argument("--commits", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=100, help="bytes of JSON a publication")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--exclusive", action="store_true")
    args = parser.parse_args()
    modes = [False, True] if args.exclusive else [False]
    for exclusive in modes:
        best = min(
            cpu_per_commit(args.per_commit, args.commits, args.size, exclusive)
            for _ in range(args.repeat)
        )
        label = "locking_mode EXCLUSIVE" if exclusive else "as the engine opens it"
        print(
            f"{label}: {args.per_commit} a commit: {best:.1f} CPU us a commit, "
            f"{best / args.per_commit:.2f} a publication"
        )


if __name__ == "__main__":
    main()
