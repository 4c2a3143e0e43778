"""Where each stored publication of the SQLite engine is: its commit row, kept in memory.

The data file (``engine/sqlite_store.py``) keeps one row per group commit,
holding all the publications it committed, and no per-publication row or
index: one row written per transaction instead of a row and an index entry
per publication (measured in ``docs/benchmarks.md``). This module is the
index that layout leaves to memory: for each stream, the commit row of each
of its stored offsets (:class:`StreamRows`, 8 bytes an offset), and for each
commit row how many of its publications are still kept and when it was
committed (:class:`CommitIndex`), so that a row is deleted once nothing in
it is kept. It is rebuilt at start from each row's packed keys (stream id
and offset of each publication, :func:`pack_keys`), without reading the
publications.

**Small rows are merged.** A quiet node commits each publication on its own:
a million one-publication rows would take seconds to read at start. The
sweep merges runs of consecutive small rows (:meth:`CommitIndex.merges`)
into the last row of each run, which keeps its id; the offsets in memory
keep naming the rows they were committed in, and such an id is resolved to
the first kept row at or after it (:meth:`CommitIndex.row_of`): a merged
row stands for every id since the kept row before it.

Nothing here touches the file or asyncio: the engine (``engine/sqlite.py``)
updates it on the event loop as commits return, the store builds it at start.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left, insort
from collections.abc import Iterable

#: Rows with fewer kept publications than this are merged by the sweep...
MERGE_BELOW = 8
#: ... into rows of about this many publications (one such run a transaction:
#: a few milliseconds of the writer's time)...
MERGE_TARGET = 512
#: ... at most this many runs a sweep.
MERGES_PER_SWEEP = 256


def pack_keys(keys: array[int]) -> bytes:
    """A commit row's keys (stream id, offset, stream id, offset ...) as stored:
    little-endian 64-bit integers."""
    if sys.byteorder == "big":  # pragma: no cover - the file is the same on every machine
        keys = array("q", keys)
        keys.byteswap()
    return keys.tobytes()


def unpack_keys(blob: bytes) -> array[int]:
    """The keys :func:`pack_keys` stored."""
    keys = array("q")
    keys.frombytes(blob)
    if sys.byteorder == "big":  # pragma: no cover
        keys.byteswap()
    return keys


class StreamRows:
    """One stream's stored offsets ``first`` .. ``first + len(commits) - 1`` (no gap),
    each with the id of the commit row holding it."""

    __slots__ = ("commits", "first")

    def __init__(self) -> None:
        self.first = 0
        self.commits: array[int] = array("q")

    @property
    def last(self) -> int:
        """The newest stored offset (``first - 1`` when none is)."""
        return self.first + len(self.commits) - 1


class CommitIndex:
    """The commit rows holding kept publications: per row, how many and when committed."""

    def __init__(self) -> None:
        #: Kept publications of each live commit row, in the order of their ids.
        self.live: dict[int, int] = {}
        #: When each live commit row was committed (its publications are no newer).
        self.times: dict[int, float] = {}
        #: Rows nothing is kept of any more, to delete from the file.
        self.dead: list[int] = []
        #: The ids of the live rows, ascending (and of some dead ones, tidied now and then).
        self.ids: list[int] = []
        #: Rows from this id on have not been looked at for merging yet.
        self.merge_from = 0

    def committed(self, commit: int, count: int, when: float) -> None:
        """A commit row holding ``count`` publications was written."""
        self.live[commit] = count
        self.times[commit] = when
        self.ids.append(commit)

    def row_of(self, commit: int) -> int | None:
        """The live row holding what ``commit`` wrote: that row, or the row it was merged
        into (the first live row after it); None if it is gone."""
        if commit in self.live:
            return commit
        ids, live = self.ids, self.live
        for index in range(bisect_left(ids, commit), len(ids)):
            if ids[index] in live:
                return ids[index]
        return None

    def add(self, rows: StreamRows, offset: int, commit: int) -> None:
        """``offset`` of a stream is in ``commit``. An offset that does not follow the
        last stored one (publications not kept between them: a history size of 0)
        starts the stream's rows again; what it held before is let go."""
        commits = rows.commits
        if not commits:
            rows.first = offset
        elif rows.first + len(commits) != offset:
            self.release(rows, rows.last)
            rows.first = offset
        commits.append(commit)

    def release(self, rows: StreamRows, upto: int) -> None:
        """Let go of a stream's stored offsets up to ``upto``."""
        count = min(len(rows.commits), upto - rows.first + 1)
        if count <= 0:
            return
        live, dead = self.live, self.dead
        for entry in rows.commits[:count]:
            commit = entry if entry in live else self.row_of(entry)
            if commit is None:  # deleted already (the disk budget)
                continue
            left = live[commit]
            if left <= 1:
                del live[commit]
                del self.times[commit]
                dead.append(commit)
            else:
                live[commit] = left - 1
        del rows.commits[:count]
        rows.first += count

    def trim(self, rows: StreamRows, floor: int, cutoff: float) -> None:
        """Let go of a stream's offsets up to ``floor`` and of those committed before
        ``cutoff``."""
        times, commits = self.times, rows.commits
        count = min(len(commits), max(0, floor - rows.first + 1))
        while count < len(commits):
            row = self.row_of(commits[count])
            if row is not None and times[row] >= cutoff:
                break
            count += 1
        self.release(rows, rows.first + count - 1)

    def commits_for(self, rows: StreamRows, first: int, last: int) -> list[int]:
        """The commit rows holding a stream's stored offsets ``first`` .. ``last``."""
        start = max(first, rows.first) - rows.first
        end = min(last, rows.last) - rows.first + 1
        if start >= end:
            return []
        found = {self.row_of(commit) for commit in dict.fromkeys(rows.commits[start:end])}
        return sorted(row for row in found if row is not None)

    def deleted_through(self, commit: int, streams: Iterable[StreamRows]) -> None:
        """Commit rows up to ``commit`` are gone from the file (the disk budget): forget
        them, and every stream's offsets in them (the oldest of each stream)."""
        for rows in streams:  # (before the rows are forgotten: row_of needs them)
            commits = rows.commits
            count = 0
            while count < len(commits):
                row = self.row_of(commits[count])
                if row is not None and row > commit:
                    break
                count += 1
            if count:
                del commits[:count]
                rows.first += count
        live, times = self.live, self.times
        for key in [key for key in live if key <= commit]:
            del live[key]
            del times[key]
        self.dead = [key for key in self.dead if key > commit]
        self.ids = sorted(live)

    def merges(self) -> list[list[int]]:
        """Runs of consecutive live rows of fewer than :data:`MERGE_BELOW` publications
        each, about :data:`MERGE_TARGET` together, to merge into their last row (at
        most :data:`MERGES_PER_SWEEP`); each row is looked at once."""
        if len(self.ids) > 2 * len(self.live) + 1024:
            self.ids = sorted(self.live)
        ids, live = self.ids, self.live
        groups: list[list[int]] = []
        run: list[int] = []
        total = 0
        start = bisect_left(ids, self.merge_from)
        for commit in ids[start:]:
            count = live.get(commit)
            if count is None:
                continue
            if count >= MERGE_BELOW:  # a big row ends the run
                if len(run) > 1:
                    groups.append(run)
                run, total = [], 0
                self.merge_from = commit + 1
            else:
                run.append(commit)
                total += count
                if total >= MERGE_TARGET:
                    groups.append(run)
                    run, total = [], 0
                    self.merge_from = commit + 1
            if len(groups) >= MERGES_PER_SWEEP:
                break
        return groups

    def merged(self, group: list[int]) -> bool:
        """``group``'s rows were merged into its last row: that row now counts what they
        kept. Whether it is live (if it had died meanwhile it is brought back, and must
        be taken off any list of rows to delete)."""
        live, times = self.live, self.times
        survivor = group[-1]
        total = live.get(survivor, 0)
        when = times.get(survivor, 0.0)
        for commit in group[:-1]:
            if commit in live:
                total += live.pop(commit)
                when = max(when, times.pop(commit))
        if not total:
            if survivor not in live:
                self.dead.append(survivor)  # written again by the merge: delete it again
            return False
        if survivor not in live:
            live[survivor] = total
            times[survivor] = when
            if survivor in self.dead:
                self.dead.remove(survivor)
            index = bisect_left(self.ids, survivor)
            if index == len(self.ids) or self.ids[index] != survivor:
                insort(self.ids, survivor)
        else:
            live[survivor] = total
            times[survivor] = when
        return True

    def load(
        self, commit: int, when: float, keys: array[int], streams: dict[int, StreamRows]
    ) -> None:
        """Rebuilding at start: a commit row (in the order of ids) and its keys; offsets
        of streams not in ``streams`` (forgotten) are not kept. (A million offsets take
        about half a second here: the loop is :meth:`add` made inline.)"""
        live = self.live
        live[commit] = 0
        self.times[commit] = when
        get = streams.get
        count = 0
        for stream, offset in zip(keys[::2], keys[1::2], strict=True):
            rows = get(stream)
            if rows is None:
                continue
            commits = rows.commits
            if commits and rows.first + len(commits) == offset:
                commits.append(commit)
            else:
                self.add(rows, offset, commit)
            count += 1
        count += live.get(commit, 0)  # (add may have let go of earlier offsets here)
        if count:
            live[commit] = count
            self.ids.append(commit)
        else:
            live.pop(commit, None)
            self.times.pop(commit, None)
            self.dead.append(commit)
