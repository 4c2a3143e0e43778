"""What only the SQLite engine has: a file that outlives the process, group commits,
delivery after commit, pages read from the file beyond the memory window, and clear
failures (a damaged file at start, a full disk on write).

The contract every engine keeps is ``test_contract.py``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from orbiter.engine.base import EngineUnavailable, HistoryPolicy, PublishFailed, TooManyStreams
from orbiter.engine.sqlite import TRIMS_PER_TRANSACTION, SqliteBroker
from orbiter.engine.sqlite_store import SqliteStore, StoreError
from orbiter.model import Publication, StreamPosition

POLICY = HistoryPolicy(size=100, ttl=600.0, meta_ttl=3600.0)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "orbiter.sqlite3"


@pytest.fixture
async def broker(path: Path) -> AsyncIterator[SqliteBroker]:
    broker = SqliteBroker(path)
    await broker.start()
    yield broker
    await broker.close()


def _stored(path: Path, channel: str) -> list[tuple[int, str]]:
    """The publications the file has for ``channel`` (offset, data as JSON), read on a
    connection of our own from the commit rows."""
    with sqlite3.connect(path) as conn:
        ids = conn.execute("SELECT id FROM streams WHERE channel = ?", (channel,)).fetchall()
        blobs = conn.execute("SELECT rows FROM commits ORDER BY id").fetchall()
    conn.close()
    if not ids:
        return []
    return sorted(
        (offset, orjson.dumps(data).decode())
        for (blob,) in blobs
        for stream, offset, data, _, _ in orjson.loads(blob)
        if stream == ids[0][0]
    )


async def test_a_restart_keeps_epochs_offsets_history_and_the_void_epoch(path: Path) -> None:
    first = SqliteBroker(path)
    await first.start()
    pubs = [await first.publish("c", {"n": i}, POLICY, {"k": "v"}) for i in range(5)]
    void = first.void_epoch
    await first.close()

    second = SqliteBroker(path)
    await second.start()
    try:
        assert second.void_epoch == void
        page = await second.history("c", None, POLICY)
        assert page.position == StreamPosition(5, pubs[0].epoch)
        assert [(p.offset, p.data, p.tags) for p in page.publications] == [
            (i + 1, {"n": i}, {"k": "v"}) for i in range(5)
        ]
        recovered = await second.history("c", StreamPosition(2, pubs[0].epoch), POLICY)
        assert recovered.recoverable
        assert [p.offset for p in recovered.publications] == [3, 4, 5]
        nxt = await second.publish("c", "after", POLICY)
        assert (nxt.offset, nxt.epoch) == (6, pubs[0].epoch)
        never = await second.history("never", None, POLICY)
        assert never.position == StreamPosition(0, void)
    finally:
        await second.close()


#: A process that publishes three times and dies without closing anything (``os._exit``);
#: also to a channel that keeps no history, and to one whose history expired and was
#: trimmed from the file by a sweep before it died.
_DIES = """
import asyncio, os, sys
from orbiter.engine.base import HistoryPolicy
from orbiter.engine.sqlite import SqliteBroker

async def main():
    broker = SqliteBroker(sys.argv[1])
    await broker.start()
    policy = HistoryPolicy(size=100, ttl=600.0, meta_ttl=3600.0)
    for i in range(3):
        pub = await broker.publish("c", i, policy)
        print(pub.offset, pub.epoch, flush=True)
    for i in range(4):
        await broker.publish("expired", i, HistoryPolicy(size=100, ttl=0.05, meta_ttl=3600.0))
    await asyncio.sleep(0.1)
    broker.sweep()
    await broker._idle.wait()
    for i in range(2):  # after the sweep: only the transactions say where it stands
        await broker.publish("none", i, HistoryPolicy(size=0, ttl=600.0, meta_ttl=3600.0))
    os._exit(0)

asyncio.run(main())
"""


async def test_what_was_acknowledged_is_in_the_file_when_the_process_dies(path: Path) -> None:
    died = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _DIES, str(path), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await died.communicate()
    acknowledged = [line.split() for line in out.decode().splitlines()]
    assert [offset for offset, _ in acknowledged] == ["1", "2", "3"]
    survivor = SqliteBroker(path)  # the lock went with the process
    await survivor.start()
    try:
        page = await survivor.history("c", None, POLICY)
        assert [p.data for p in page.publications] == [0, 1, 2]
        assert page.position == StreamPosition(3, acknowledged[0][1])
        # Where no publication row is left, the stream's row says where it stands.
        assert _stored(path, "none") == []
        none = HistoryPolicy(size=0, ttl=600.0, meta_ttl=3600.0)
        assert (await survivor.history("none", None, none)).position.offset == 2
        assert _stored(path, "expired") == []
        expired = await survivor.history("expired", None, POLICY)
        assert expired.position.offset == 4
        assert (await survivor.publish("expired", "next", POLICY)).offset == 5
    finally:
        await survivor.close()


async def test_publishers_and_subscribers_see_a_publication_only_once_committed(
    broker: SqliteBroker, path: Path
) -> None:
    seen_in_file: list[bool] = []

    def on_publication(pub: Publication) -> None:
        seen_in_file.append((pub.offset, '"x"') in _stored(path, "c"))

    broker.set_handlers(on_publication, lambda _: None)
    await broker.subscribe("c")
    pub = await broker.publish("c", "x", POLICY)
    assert _stored(path, "c") == [(1, '"x"')]  # in the file when the publisher hears OK
    assert seen_in_file == [True]  # and before the subscriber got it
    assert pub.offset == 1


async def test_concurrent_publications_share_transactions_and_keep_offset_order(
    broker: SqliteBroker,
) -> None:
    transactions = 0
    write = broker._store.write

    def counting_write(batch):  # the real write, counted
        nonlocal transactions
        transactions += 1
        write(batch)

    broker._store.write = counting_write  # type: ignore[method-assign]
    got: list[Publication] = []
    broker.set_handlers(got.append, lambda _: None)
    await broker.subscribe("a")
    await broker.subscribe("b")
    pubs = await asyncio.gather(*(broker.publish("ab"[i % 2], i, POLICY) for i in range(1000)))
    assert transactions <= 10  # group commits: not one per publication
    for channel in "ab":
        mine = [p for p in pubs if p.channel == channel]
        assert [p.offset for p in mine] == list(range(1, 501))
        assert [p.data for p in mine] == sorted(p.data for p in mine)  # in call order
        delivered = [p for p in got if p.channel == channel]
        assert [p.offset for p in delivered] == list(range(1, 501))


async def test_pages_beyond_the_memory_window_are_read_from_the_file(path: Path) -> None:
    broker = SqliteBroker(path, window=4)
    await broker.start()
    try:
        pubs = [await broker.publish("c", i, POLICY) for i in range(60)]
        assert len(broker._streams["c"].window) == 4
        epoch = pubs[0].epoch
        page = await broker.history("c", StreamPosition(10, epoch), POLICY)
        assert page.recoverable
        assert [p.data for p in page.publications] == list(range(10, 60))
        newest = await broker.history("c", None, POLICY, limit=20)
        assert [p.offset for p in newest.publications] == list(range(41, 61))
        everything = await broker.history("c", None, POLICY)
        assert len(everything.publications) == 60
        # What memory has is served from memory (the same objects as published).
        recent = await broker.history("c", StreamPosition(57, epoch), POLICY)
        assert recent.publications == pubs[57:]
        assert recent.publications[0] is pubs[57]
    finally:
        await broker.close()


TRICKY: list[object] = [
    0.30000000000000004,
    5e-324,
    -0.0,
    2**63 - 1,
    18446744073709551615,
    '\U0001f600 \u2028 "quoted" \\ \x00',
    'ascii, "quoted" \\ \n \x1f',  # a string the writer thread encodes with its row
    "",
    None,
    True,
    [1, {"nested": [None, 1.5, "x"]}],
    {},
]


async def test_what_the_file_gives_back_is_what_was_published(path: Path) -> None:
    broker = SqliteBroker(path, window=1)  # every read but the newest from the file
    await broker.start()
    try:
        for i, data in enumerate(TRICKY):
            await broker.publish("t", data, POLICY, {"n": str(i), "é": "\u2028"} if i % 2 else None)
        page = await broker.history("t", StreamPosition(0, broker.void_epoch), POLICY)
        assert page.recoverable
        assert [p.data for p in page.publications] == TRICKY
        assert [p.tags for p in page.publications] == [
            {"n": str(i), "é": "\u2028"} if i % 2 else None for i in range(len(TRICKY))
        ]
    finally:
        await broker.close()


async def test_the_node_budget_bounds_memory_but_not_history(path: Path) -> None:
    broker = SqliteBroker(path, max_history_bytes=2000)
    await broker.start()
    try:
        for i in range(200):
            await broker.publish(f"c{i % 10}", "x" * 100, POLICY)
        assert broker.stats()["history_bytes"] <= 2000
        assert broker.stats()["history_bytes"] > 0
        for i in range(10):
            page = await broker.history(f"c{i}", StreamPosition(0, broker.void_epoch), POLICY)
            assert page.recoverable
            assert [p.offset for p in page.publications] == list(range(1, 21))
    finally:
        await broker.close()


async def test_the_sweep_trims_the_file_to_each_channels_rule(
    broker: SqliteBroker, path: Path
) -> None:
    small = HistoryPolicy(size=3, ttl=600.0, meta_ttl=3600.0)
    for i in range(10):
        await broker.publish("c", i, small)
    assert len(_stored(path, "c")) == 10  # reads apply the rule; the sweep deletes
    assert [p.data for p in (await broker.history("c", None, small)).publications] == [7, 8, 9]
    broker.sweep()
    await broker.publish("d", 0, small)  # the trims ride in the next transaction
    await broker._idle.wait()
    assert [offset for offset, _ in _stored(path, "c")] == [8, 9, 10]


async def test_a_sweep_over_many_channels_trims_them_over_several_transactions(
    broker: SqliteBroker, path: Path
) -> None:
    small = HistoryPolicy(size=1, ttl=600.0, meta_ttl=3600.0)
    channels = TRIMS_PER_TRANSACTION * 2 + 10
    # Two commit rows: every channel's first publication, then every channel's second.
    await asyncio.gather(*(broker.publish(f"c{i}", 1, small) for i in range(channels)))
    await asyncio.gather(*(broker.publish(f"c{i}", 2, small) for i in range(channels)))
    sizes: list[tuple[int, int]] = []
    write = broker._store.write

    def counted(batch):  # the real write, its streams' rows and deleted commit rows counted
        sizes.append((len(batch.tops), len(batch.deletes)))
        write(batch)

    broker._store.write = counted  # type: ignore[method-assign]
    broker.sweep()
    await broker._idle.wait()
    # The first row goes only once every stream's row has its top (a crash between
    # the transactions must not lose a top: test_sqlite_layout.py).
    assert sizes == [(TRIMS_PER_TRANSACTION, 0), (TRIMS_PER_TRANSACTION, 0), (10, 1)]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM commits").fetchone() == (1,)
    conn.close()
    assert _stored(path, "c7") == [(2, "2")]


def _used_bytes(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        pages, free, size = (
            conn.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("page_count", "freelist_count", "page_size")
        )
    conn.close()
    return int((pages - free) * size)


async def test_the_disk_budget_deletes_the_oldest_of_every_channel_first(path: Path) -> None:
    budget = 400_000
    broker = SqliteBroker(path, window=1, max_disk_bytes=budget)
    await broker.start()
    big = HistoryPolicy(size=10_000, ttl=600.0, meta_ttl=3600.0)
    epochs = {}
    for i in range(2000):  # about 2.3 MB of publications, round robin over four channels
        pub = await broker.publish(f"d{i % 4}", "x" * 1000, big)
        epochs[pub.channel] = pub.epoch
    assert _used_bytes(path) > budget
    for _ in range(30):
        broker.sweep()
        await broker._idle.wait()
        if _used_bytes(path) <= budget:
            break
    assert _used_bytes(path) <= budget
    kept = 0
    for channel, epoch in epochs.items():
        page = await broker.history(channel, StreamPosition(0, epoch), big)
        assert not page.recoverable  # the oldest went: a client from the start is told
        offsets = [p.offset for p in page.publications]
        assert offsets == list(range(501 - len(offsets), 501))  # the newest stay, no hole
        assert 0 < len(offsets) < 500
        kept += len(offsets)
    assert kept < 2000
    await broker.close()
    again = SqliteBroker(path)  # epochs and offsets stay, though publications went
    await again.start()
    try:
        for channel, epoch in epochs.items():
            assert (await again.history(channel, None, big)).position == StreamPosition(500, epoch)
        assert (await again.publish("d0", "next", big)).offset == 501
    finally:
        await again.close()


async def test_compact_gives_the_space_back_and_only_with_no_server_on_the_file(
    path: Path,
) -> None:
    broker = SqliteBroker(path)
    await broker.start()
    policy = HistoryPolicy(size=1, ttl=600.0, meta_ttl=3600.0)
    for _ in range(300):
        await broker.publish("c", "x" * 4000, policy)
    with pytest.raises(StoreError, match="in use by another orbiter process"):
        SqliteStore(path).compact()  # not while a server has it
    broker.sweep()  # trims all but the newest: their pages are free, the file as big
    await broker._idle.wait()
    await broker.close()
    before, after = SqliteStore(path).compact()
    assert after < before / 10
    again = SqliteBroker(path)
    await again.start()
    try:
        page = await again.history("c", None, policy)
        assert page.position.offset == 300
        assert [p.offset for p in page.publications] == [300]
    finally:
        await again.close()


async def test_idle_streams_are_forgotten_in_the_file_too(path: Path) -> None:
    broker = SqliteBroker(path)
    await broker.start()
    policy = HistoryPolicy(size=10, ttl=1.0, meta_ttl=5.0)
    pub = await broker.publish("gone", 1, policy)
    broker.sweep(now=pub.time + 60.0)
    await broker._idle.wait()
    void = broker.void_epoch
    assert void != pub.epoch
    await broker.close()
    assert _stored(path, "gone") == []
    again = SqliteBroker(path)
    await again.start()
    try:
        assert again.stats()["channels"] == 0
        assert again.void_epoch == void
        page = await again.history("gone", StreamPosition(1, pub.epoch), policy)
        assert not page.recoverable
    finally:
        await again.close()


def _write_garbage(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database, " * 1000)


async def test_a_damaged_file_is_reported_at_start_naming_it(path: Path) -> None:
    _write_garbage(path)
    broker = SqliteBroker(path)
    with pytest.raises(EngineUnavailable, match=r"damaged or not an orbiter data file") as info:
        await broker.start()
    assert str(path) in str(info.value)


async def test_a_file_of_another_program_is_refused(path: Path) -> None:
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.close()
    with pytest.raises(EngineUnavailable, match="tables orbiter did not make"):
        await SqliteBroker(path).start()


async def test_a_failed_write_fails_its_publishers_and_gives_back_its_offsets(
    broker: SqliteBroker, path: Path
) -> None:
    got: list[Publication] = []
    broker.set_handlers(got.append, lambda _: None)
    await broker.subscribe("c")
    first = await broker.publish("c", "small", POLICY)
    writer = broker._store._writer
    assert writer is not None
    pages = writer.execute("PRAGMA page_count").fetchone()[0]
    writer.execute(f"PRAGMA max_page_count = {pages}")  # the file may not grow: a full disk
    failures = await asyncio.gather(
        *(broker.publish("c", "y" * 20_000, POLICY) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(f, PublishFailed) for f in failures), failures
    assert "full" in str(failures[0])
    assert [p.offset for p in got] == [1]  # nobody saw what was not kept
    writer.execute("PRAGMA max_page_count = 1073741823")
    after = await broker.publish("c", "after", POLICY)
    assert after.offset == first.offset + 1  # no hole where the failed ones were
    page = await broker.history("c", StreamPosition(0, first.epoch), POLICY)
    assert page.recoverable
    assert [p.data for p in page.publications] == ["small", "after"]
    assert [p.offset for p in got] == [1, 2]
    assert [offset for offset, _ in _stored(path, "c")] == [1, 2]


async def test_one_orbiter_per_data_file(path: Path) -> None:
    first = SqliteBroker(path)
    await first.start()
    try:
        with pytest.raises(EngineUnavailable, match="in use by another orbiter process"):
            await SqliteBroker(path).start()
    finally:
        await first.close()
    second = SqliteBroker(path)  # free again once the first closed
    await second.start()
    await second.close()


async def test_a_data_directory_with_uri_characters_in_its_name(tmp_path: Path) -> None:
    path = tmp_path / "odd ?#%name" / "orbiter.sqlite3"
    broker = SqliteBroker(path, window=1)  # reads from the file, on the reader connection
    await broker.start()
    try:
        first = await broker.publish("c", 1, POLICY)
        await broker.publish("c", 2, POLICY)
        page = await broker.history("c", StreamPosition(0, first.epoch), POLICY)
        assert [p.data for p in page.publications] == [1, 2]
    finally:
        await broker.close()


async def test_publishing_after_close_is_refused(path: Path) -> None:
    broker = SqliteBroker(path)
    await broker.start()
    await broker.close()
    with pytest.raises(PublishFailed, match="closed"):
        await broker.publish("c", 1, POLICY)
    await broker.close()  # a second close is harmless


async def test_close_commits_what_is_queued(path: Path) -> None:
    broker = SqliteBroker(path)
    await broker.start()
    pending = [asyncio.ensure_future(broker.publish("c", i, POLICY)) for i in range(50)]
    await asyncio.sleep(0)  # queued, not yet committed
    await broker.close()
    assert [p.offset for p in await asyncio.gather(*pending)] == list(range(1, 51))
    assert len(_stored(path, "c")) == 50


async def test_a_cancelled_publisher_does_not_stop_the_others(broker: SqliteBroker) -> None:
    doomed = asyncio.ensure_future(broker.publish("c", 1, POLICY))
    kept = asyncio.ensure_future(broker.publish("c", 2, POLICY))
    await asyncio.sleep(0)
    doomed.cancel()
    assert (await kept).offset == 2  # the cancelled one was published all the same
    assert [p.data for p in (await broker.history("c", None, POLICY)).publications] == [1, 2]


async def test_at_most_max_streams_and_reading_stores_nothing(path: Path) -> None:
    broker = SqliteBroker(path, max_streams=2)
    await broker.start()
    try:
        for i in range(100):
            await broker.history(f"never-{i}", None, POLICY)
        await broker.publish("a", 1, POLICY)
        await broker.publish("b", 1, POLICY)
        with pytest.raises(TooManyStreams, match="max_channels"):
            await broker.publish("c", 1, POLICY)
        assert broker.stats()["channels"] == 2
    finally:
        await broker.close()
