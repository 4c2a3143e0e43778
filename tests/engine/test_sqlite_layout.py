"""The SQLite engine's file layout: one row per group commit, the in-memory index of
which row holds each stored offset (``engine/sqlite_index.py``), rows deleted only
once nothing in them is kept, tops kept before rows go, and files of the older
layout (a row per publication, schema version 2) converted at start."""

from __future__ import annotations

import asyncio
import sqlite3
from array import array
from pathlib import Path

import orjson
import pytest

from orbiter.engine import sqlite_index
from orbiter.engine.base import EngineUnavailable, HistoryPolicy
from orbiter.engine.sqlite import SqliteBroker
from orbiter.engine.sqlite_index import CommitIndex, StreamRows, pack_keys, unpack_keys
from orbiter.engine.sqlite_store import SCHEMA_VERSION
from orbiter.model import StreamPosition

POLICY = HistoryPolicy(size=100, ttl=600.0, meta_ttl=3600.0)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "orbiter.sqlite3"


def _commit_ids(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM commits ORDER BY id")]
    conn.close()
    return ids


# ---------------------------------------------------------------- the index alone


def test_keys_are_packed_as_little_endian_64_bit_integers() -> None:
    keys = array("q", [1, 2, 3, 2**40])
    assert pack_keys(keys) == b"".join(n.to_bytes(8, "little") for n in (1, 2, 3, 2**40))
    assert unpack_keys(pack_keys(keys)) == keys


def test_a_commit_row_dies_only_when_every_stream_let_go_of_it() -> None:
    index = CommitIndex()
    a, b = StreamRows(), StreamRows()
    index.committed(1, 2, 10.0)
    index.add(a, 1, 1)
    index.add(b, 1, 1)
    index.committed(2, 1, 20.0)
    index.add(a, 2, 2)
    index.release(a, 1)
    assert index.dead == []  # b still keeps row 1
    assert index.commits_for(b, 1, 1) == [1]
    index.release(b, b.last)
    assert index.dead == [1]
    assert index.commits_for(a, 1, 2) == [2]
    assert (a.first, a.last) == (2, 2)


def test_trimming_goes_by_the_floor_and_by_the_commit_time() -> None:
    index = CommitIndex()
    rows = StreamRows()
    for commit in range(1, 6):  # offsets 1..5, committed at 10, 20, ... 50
        index.committed(commit, 1, commit * 10.0)
        index.add(rows, commit, commit)
    index.trim(rows, floor=2, cutoff=0.0)
    assert (rows.first, index.dead) == (3, [1, 2])
    index.trim(rows, floor=0, cutoff=40.0)  # committed before 40: offset 3
    assert (rows.first, rows.last, index.dead) == (4, 5, [1, 2, 3])
    index.trim(rows, floor=0, cutoff=40.0)  # nothing more
    assert index.dead == [1, 2, 3]


def test_an_offset_after_a_hole_starts_the_streams_rows_again() -> None:
    index = CommitIndex()
    rows = StreamRows()
    index.committed(1, 1, 1.0)
    index.add(rows, 1, 1)
    index.committed(2, 1, 2.0)
    index.add(rows, 3, 2)  # offset 2 was not stored (a history size of 0)
    assert (rows.first, rows.last, index.dead) == (3, 3, [1])


def test_rows_deleted_for_the_disk_budget_leave_every_stream() -> None:
    index = CommitIndex()
    a, b = StreamRows(), StreamRows()
    for commit in range(1, 5):
        index.committed(commit, 2, float(commit))
        index.add(a, commit, commit)
        index.add(b, commit, commit)
    index.deleted_through(2, [a, b])
    assert (a.first, b.first) == (3, 3)
    assert list(index.live) == [3, 4]
    assert index.commits_for(a, 1, 4) == [3, 4]


# ---------------------------------------------------------------- the engine


async def test_one_commit_row_per_transaction_holding_all_its_publications(path: Path) -> None:
    broker = SqliteBroker(path)
    await broker.start()
    try:
        await asyncio.gather(*(broker.publish(f"c{i}", i, POLICY) for i in range(50)))
        assert len(_commit_ids(path)) == 1
        with sqlite3.connect(path) as conn:
            (blob,) = conn.execute("SELECT rows FROM commits").fetchone()
        conn.close()
        assert sorted(row[2] for row in orjson.loads(blob)) == list(range(50))
    finally:
        await broker.close()


async def test_a_restart_rebuilds_the_index_and_reads_old_pages_from_the_file(
    path: Path,
) -> None:
    broker = SqliteBroker(path, window=2)
    await broker.start()
    for i in range(10):  # two channels sharing commit rows
        await asyncio.gather(
            broker.publish("a", f"a{i}", POLICY, {"i": str(i)}), broker.publish("b", i, POLICY)
        )
    await broker.close()
    again = SqliteBroker(path, window=2)
    await again.start()
    try:
        page = await again.history("a", None, POLICY)
        assert [(p.offset, p.data, p.tags) for p in page.publications] == [
            (i + 1, f"a{i}", {"i": str(i)}) for i in range(10)
        ]
        assert (await again.publish("b", "next", POLICY)).offset == 11
        b = await again.history("b", None, POLICY)
        assert [p.data for p in b.publications] == [*range(10), "next"]
        recovered = await again.history("b", StreamPosition(3, b.position.epoch), POLICY)
        assert recovered.recoverable
        assert [p.offset for p in recovered.publications] == list(range(4, 12))
    finally:
        await again.close()


async def test_a_shared_row_stays_until_every_stream_in_it_let_go(path: Path) -> None:
    broker = SqliteBroker(path)
    await broker.start()
    short = HistoryPolicy(size=1, ttl=600.0, meta_ttl=3600.0)
    try:
        await asyncio.gather(broker.publish("short", 1, short), broker.publish("long", 1, POLICY))
        await broker.publish("short", 2, short)
        broker.sweep()
        await broker._idle.wait()
        assert len(_commit_ids(path)) == 2  # "long" still keeps the first row
        page = await broker.history("long", None, POLICY)
        assert [p.data for p in page.publications] == [1]
    finally:
        await broker.close()


async def test_a_drained_stream_keeps_its_top_across_a_restart(path: Path) -> None:
    broker = SqliteBroker(path)
    await broker.start()
    small = HistoryPolicy(size=2, ttl=600.0, meta_ttl=3600.0)
    for i in range(5):
        await broker.publish("c", i, small)
    broker.sweep()
    await broker._idle.wait()
    assert len(_commit_ids(path)) == 2  # offsets 4 and 5
    # The rows' tops are what a start counts on once no row holds the stream: make
    # the row drained by hand, as the sweep does when the time rule excludes all.
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM commits")
    conn.close()
    await broker.close()
    again = SqliteBroker(path)
    await again.start()
    try:
        assert (await again.publish("c", "next", small)).offset == 6
    finally:
        await again.close()


async def test_a_forgotten_streams_id_is_not_given_again_while_rows_name_it(
    path: Path,
) -> None:
    broker = SqliteBroker(path)
    await broker.start()
    brief = HistoryPolicy(size=10, ttl=1.0, meta_ttl=5.0)
    _, gone = await asyncio.gather(
        broker.publish("kept", "k", POLICY), broker.publish("gone", "g", brief)
    )
    gone_id = broker._streams["gone"].id
    broker.sweep(now=gone.time + 60.0)  # "gone" is forgotten; the row lives on for "kept"
    await broker._idle.wait()
    assert broker.stats()["channels"] == 1
    await broker.close()
    again = SqliteBroker(path)
    await again.start()
    await again.publish("new", "n", POLICY)
    # The row still names gone_id: a stream given it would be handed that row's
    # publications by the next start's index.
    assert again._streams["new"].id > gone_id
    await again.close()
    third = SqliteBroker(path)
    await third.start()
    try:
        page = await third.history("new", None, POLICY)
        assert [(p.offset, p.data) for p in page.publications] == [(1, "n")]
        assert [p.data for p in (await third.history("kept", None, POLICY)).publications] == ["k"]
    finally:
        await third.close()


# ---------------------------------------------------------------- the older layout


def _version_2_file(path: Path) -> None:
    """A file as orbiter wrote it before the commit rows: a row per publication."""
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
            CREATE TABLE streams (id INTEGER PRIMARY KEY, channel TEXT NOT NULL UNIQUE,
                epoch TEXT NOT NULL, top INTEGER NOT NULL, touched REAL NOT NULL,
                keep INTEGER NOT NULL, ttl REAL NOT NULL, meta_ttl REAL NOT NULL);
            CREATE TABLE publications (stream INTEGER NOT NULL, offset INTEGER NOT NULL,
                data BLOB NOT NULL, tags BLOB, time REAL NOT NULL);
            CREATE UNIQUE INDEX publications_by_stream ON publications (stream, offset);
            INSERT INTO meta VALUES ('void_epoch', 'void-1');
            INSERT INTO streams VALUES (1, 'a', 'epoch-a', 0, 1.0, 100, 600.0, 3600.0);
            INSERT INTO streams VALUES (2, 'b', 'epoch-b', 7, 1.0, 100, 600.0, 3600.0);
            PRAGMA user_version = 2;
            """
        )
        now = 2e9  # the far future: within any time rule
        rows: list[tuple[int, int, str, str | None, float]] = [
            (1, offset, orjson.dumps({"n": offset}).decode(), None, now) for offset in (1, 2)
        ]
        rows.append((1, 3, '"three"', '{"k":"v"}', now))
        conn.executemany("INSERT INTO publications VALUES (?, ?, ?, ?, ?)", rows)
    conn.close()


async def test_a_version_2_file_is_converted_at_start(path: Path) -> None:
    _version_2_file(path)
    broker = SqliteBroker(path)
    await broker.start()
    try:
        assert broker.void_epoch == "void-1"
        page = await broker.history("a", None, POLICY)
        assert page.position == StreamPosition(3, "epoch-a")
        assert [(p.offset, p.data, p.tags) for p in page.publications] == [
            (1, {"n": 1}, None),
            (2, {"n": 2}, None),
            (3, "three", {"k": "v"}),
        ]
        drained = await broker.history("b", None, POLICY)  # its row's top, no publications
        assert drained.position == StreamPosition(7, "epoch-b")
        assert (await broker.publish("a", 4, POLICY)).offset == 4
        assert (await broker.publish("b", 8, POLICY)).offset == 8
    finally:
        await broker.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert "publications" not in tables


async def test_a_file_of_a_newer_orbiter_is_refused_naming_its_version(path: Path) -> None:
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(EngineUnavailable, match=f"schema version {SCHEMA_VERSION + 1}"):
        await SqliteBroker(path).start()


# ---------------------------------------------------------------- merging small rows


def test_runs_of_small_rows_are_merged_into_their_last_which_stands_for_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sqlite_index, "MERGE_TARGET", 3)
    index = CommitIndex()
    a = StreamRows()
    for commit in range(1, 8):  # offsets 1..7, a row each
        index.committed(commit, 1, float(commit))
        index.add(a, commit, commit)
    assert index.merges() == [[1, 2, 3], [4, 5, 6]]  # 7 waits for more
    assert index.merges() == []  # each row is looked at once
    assert index.merged([1, 2, 3])
    assert index.merged([4, 5, 6])
    assert index.live == {3: 3, 6: 3, 7: 1}
    assert [index.row_of(commit) for commit in range(1, 8)] == [3, 3, 3, 6, 6, 6, 7]
    assert index.commits_for(a, 2, 5) == [3, 6]
    index.release(a, 2)
    assert (index.live[3], index.dead) == (1, [])
    index.release(a, 4)
    assert (index.dead, index.live[6]) == ([3], 2)


def test_a_row_of_many_publications_is_not_merged_and_ends_a_run() -> None:
    index = CommitIndex()
    a = StreamRows()
    counts = [1, 1, sqlite_index.MERGE_BELOW, 1, 1, 1]
    offset = 0
    for commit, count in enumerate(counts, start=1):
        index.committed(commit, count, float(commit))
        for _ in range(count):
            offset += 1
            index.add(a, offset, commit)
    assert index.merges() == [[1, 2]]  # 3 is big enough; 4..6 wait for more


def test_a_merge_brings_back_its_last_row_if_it_died_meanwhile() -> None:
    index = CommitIndex()
    a, b = StreamRows(), StreamRows()
    index.committed(1, 1, 1.0)
    index.add(a, 1, 1)
    index.committed(2, 1, 2.0)
    index.add(b, 1, 2)
    index.release(b, 1)  # row 2 dies before the merge of [1, 2] commits
    assert index.dead == [2]
    assert index.merged([1, 2])  # the file's row 2 now holds a's offset 1
    assert (index.live, index.dead) == ({2: 1}, [])
    assert index.commits_for(a, 1, 1) == [2]


async def test_small_commits_are_merged_by_the_sweep_and_read_back(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_index, "MERGE_TARGET", 10)
    broker = SqliteBroker(path, window=1)
    await broker.start()
    try:
        for i in range(25):  # a row each, alternating between two channels
            await broker.publish(f"c{i % 2}", i, POLICY)
        before = broker._index.commits_for(broker._streams["c0"].rows, 1, 13)
        assert len(_commit_ids(path)) == 25
        merges: list[list[list[int]]] = []
        write = broker._store.write

        def counted(batch):  # the real write, its merges noted
            merges.append(batch.merges)
            write(batch)

        broker._store.write = counted  # type: ignore[method-assign]
        broker.sweep()
        await broker._idle.wait()
        assert _commit_ids(path) == [10, 20, 21, 22, 23, 24, 25]
        # One run a transaction, so that no commit waits behind a long merge.
        assert merges == [[list(range(1, 11))], [list(range(11, 21))]]
        page = await broker.history("c0", None, POLICY)
        assert [p.data for p in page.publications] == list(range(0, 25, 2))
        # A read that resolved its rows before the merge finds them in the merged rows.
        assert broker._reader is not None
        blobs = await asyncio.get_running_loop().run_in_executor(
            broker._reader, broker._store.read_commits, before
        )
        c0 = broker._streams["c0"].id
        found = [row[2] for blob in blobs for row in orjson.loads(blob) if row[0] == c0]
        assert found == list(range(0, 25, 2))
    finally:
        await broker.close()
    again = SqliteBroker(path, window=1)
    await again.start()
    try:
        page = await again.history("c1", None, POLICY)
        assert [p.data for p in page.publications] == list(range(1, 25, 2))
        assert (await again.publish("c1", "next", POLICY)).offset == 13
    finally:
        await again.close()
