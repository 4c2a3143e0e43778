"""The SQLite engine's bounded wait for a flushed commit (``commit_wait``).

``Broker.flush`` starts the read's transaction and waits at most ``commit_wait``
seconds for it: if it is over by then, it is reported at once (the read's
publications delivered and told within the flush, so the fast path answers in
the read's own iteration); if not, the loop goes on and the report comes as
without the wait. Exactly one of the two reports each transaction, whatever the
timing (:class:`~orbiter.engine.sqlite_writer.WriterThread`'s handshake), and the
loop never waits longer than the bound, whatever the disk does.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from orbiter.config.settings import Config
from orbiter.engine.base import PublishFailed
from orbiter.engine.sqlite import SqliteBroker
from orbiter.engine.sqlite_store import WriteBatch
from orbiter.engine.sqlite_writer import WriterThread
from orbiter.http.api_rules import Outcome
from orbiter.http.fast_publish import FastPublishProtocol, _DateHeader
from orbiter.model import Publication
from orbiter.node import Node
from tests.engine.test_sqlite_flush import POLICY, Ticker, publish_request, stored_offsets
from tests.support.standins import StandInTakeover, StandInTransport
from tests.support.waiting import until

#: Longer than any commit takes, on any machine: the wait is over when the commit is.
GENEROUS = 5.0


# ---------------------------------------------------------------- the writer thread


async def test_a_call_over_within_the_wait_is_reported_before_submit_returns() -> None:
    writer = WriterThread(asyncio.get_running_loop(), "test-writer")
    try:
        reports: list[tuple[Any, BaseException | None]] = []

        def done(result: Any, error: BaseException | None) -> None:
            reports.append((result, error))

        assert writer.submit(lambda: 42, done=done, wait=GENEROUS)
        assert reports == [(42, None)]
        assert writer.submit(_raise, done=done, wait=GENEROUS)
        assert isinstance(reports[1][1], ValueError)
        await asyncio.sleep(0.05)
        assert len(reports) == 2  # the thread did not report them too
    finally:
        await writer.stop()


async def test_a_call_past_the_wait_is_reported_by_the_thread_and_the_loop_goes_on() -> None:
    writer = WriterThread(asyncio.get_running_loop(), "test-writer")
    try:
        reports: list[int] = []
        release = threading.Event()
        started = time.monotonic()
        waited = writer.submit(
            lambda: release.wait(10) and 1, done=lambda r, _: reports.append(r), wait=0.01
        )
        assert not waited
        assert time.monotonic() - started < 1.0  # the bound, not the call
        assert reports == []
        release.set()
        await until(lambda: bool(reports))
        await asyncio.sleep(0.05)
        assert reports == [1]  # once
    finally:
        await writer.stop()


async def test_every_call_is_reported_exactly_once_in_order_whatever_the_timing() -> None:
    writer = WriterThread(asyncio.get_running_loop(), "test-writer")
    rng = random.Random(15)
    try:
        reports: list[int] = []
        for i in range(300):  # calls about as long as the wait: both sides win sometimes
            length = rng.choice((0.0, 0.00005, 0.0001, 0.0002, 0.0004))
            writer.submit(
                partial_sleep(length, i), done=lambda r, _: reports.append(r), wait=0.0001
            )
            if rng.random() < 0.3:
                await asyncio.sleep(0)
        await writer.call(lambda: None)
        await until(lambda: len(reports) >= 300)
        await asyncio.sleep(0.02)
        assert reports == list(range(300))
    finally:
        await writer.stop()


def partial_sleep(length: float, value: int) -> Callable[[], int]:
    def call() -> int:
        if length:
            time.sleep(length)
        return value

    return call


def _raise() -> None:
    raise ValueError("no")


# ---------------------------------------------------------------- the engine


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[SqliteBroker]:
    broker = SqliteBroker(tmp_path / "orbiter.sqlite3", commit_wait=GENEROUS)
    await broker.start()
    yield broker
    await broker.close()


async def test_a_flushed_commit_is_reported_within_the_flush_once_in_the_file(
    broker: SqliteBroker,
) -> None:
    delivered: list[Publication] = []
    broker.set_handlers(delivered.append, lambda _: None)
    await broker.subscribe("c")
    told: list[tuple[Outcome, list[int], int]] = []

    def done(outcome: Outcome) -> None:
        told.append((outcome, stored_offsets(broker.path), len(delivered)))

    for i in range(3):
        broker.publish_then("c", i, POLICY, None, done)
    assert told == []
    broker.flush()
    assert len(told) == 3  # within the flush: the commit was over within the wait
    for n, (pub, stored, seen) in enumerate(told):
        assert isinstance(pub, Publication)
        assert pub.offset == n + 1
        assert pub.offset in stored  # told only once it is in the file
        assert seen == n + 1  # delivered (in offset order) before it is told
    assert broker._idle.is_set()


async def test_a_stalled_disk_keeps_the_loop_running_and_the_answer_waits_for_the_commit(
    tmp_path: Path,
) -> None:
    broker = SqliteBroker(tmp_path / "orbiter.sqlite3", commit_wait=0.01)
    await broker.start()
    try:
        store = broker._store
        write = store.write
        wrote: list[float] = []

        def stalled(batch: WriteBatch) -> None:
            time.sleep(1.0)
            write(batch)
            wrote.append(time.monotonic())

        store.write = stalled  # type: ignore[method-assign]
        ticker = Ticker()
        told: list[tuple[float, Outcome]] = []
        broker.publish_then("c", 1, POLICY, None, lambda o: told.append((time.monotonic(), o)))
        started = time.monotonic()
        broker.flush()
        assert time.monotonic() - started < 0.5  # the bound (0.01 s), not the disk's 1 s
        assert told == []
        ticks = ticker.ticks
        await asyncio.sleep(0.2)
        assert ticker.ticks > ticks + 10  # the loop goes on meanwhile
        await until(lambda: bool(told))
        ticker.stop()
        ((when, pub),) = told
        assert isinstance(pub, Publication)
        assert pub.offset == 1
        assert when >= wrote[0]  # told after the commit returned
        store.write = write  # type: ignore[method-assign]
    finally:
        await broker.close()


async def test_the_fast_path_answers_a_read_in_its_own_iteration_in_order(tmp_path: Path) -> None:
    broker = SqliteBroker(tmp_path / "data.sqlite3", commit_wait=GENEROUS)
    node = Node(Config(), broker=broker)
    await node.start()
    try:
        transport = StandInTransport()
        protocol = FastPublishProtocol(StandInTakeover(transport), node, _DateHeader())  # type: ignore[arg-type]
        protocol.connection_made(transport)  # type: ignore[arg-type]
        bad = publish_request(0).replace(b'"data"', b'"datA"')  # 400: 'data' is missing
        # A refused request answered at once, then two the engine keeps: the refusal's
        # answer goes out first, though the flush reports their commit at once.
        protocol.data_received(bad + publish_request(1) + publish_request(2))
        assert answers(transport) == [(400, None), (200, 1), (200, 2)]  # within the read
        await asyncio.sleep(0)  # (the next read comes in another iteration)
        protocol.data_received(publish_request(3) + bad + publish_request(4))
        assert answers(transport)[3:] == [(200, 3), (400, None), (200, 4)]
        assert stored_offsets(broker.path) == [1, 2, 3, 4]
        assert transport.reading
        protocol.connection_lost(None)
    finally:
        await node.close()


def answers(transport: StandInTransport) -> list[tuple[int, int | None]]:
    """Each response's status and offset (None: an error)."""
    got = []
    for part in bytes(transport.out).split(b"HTTP/1.1 ")[1:]:
        body = orjson.loads(part.split(b"\r\n\r\n", 1)[1])
        got.append((int(part[:3]), body.get("offset")))
    return got


async def test_only_the_first_flush_of_an_iteration_waits(broker: SqliteBroker) -> None:
    told: list[Outcome] = []
    broker.publish_then("c", "first read", POLICY, None, told.append)
    broker.flush()
    assert len(told) == 1  # reported within its flush
    # Another read in the same iteration: cut, not waited for (it shares nothing, but
    # a third would share its successor's commit: group commit is kept).
    broker.publish_then("c", "second read", POLICY, None, told.append)
    broker.flush()
    assert len(told) == 1
    assert broker._in_flight is not None
    broker.publish_then("c", "third read", POLICY, None, told.append)
    broker.flush()  # one in flight: queued behind it
    await until(lambda: len(told) == 3)
    await asyncio.sleep(0)
    broker.publish_then("c", "a later iteration", POLICY, None, told.append)
    broker.flush()
    assert len(told) == 4  # the next iteration's first flush waits again
    assert [o.offset for o in told if isinstance(o, Publication)] == [1, 2, 3, 4]


async def test_a_failed_commit_reported_within_the_flush_tells_publish_failed(
    broker: SqliteBroker,
) -> None:
    delivered: list[Publication] = []
    broker.set_handlers(delivered.append, lambda _: None)
    await broker.subscribe("c")
    store = broker._store
    write = store.write

    def refused(batch: WriteBatch) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    store.write = refused  # type: ignore[method-assign]
    told: list[Outcome] = []
    broker.publish_then("c", "lost", POLICY, None, told.append)
    broker.flush()
    assert len(told) == 1  # within the flush: never an OK
    assert isinstance(told[0], PublishFailed)
    assert delivered == []
    store.write = write  # type: ignore[method-assign]
    await asyncio.sleep(0)
    broker.publish_then("c", "kept", POLICY, None, told.append)
    broker.flush()
    assert isinstance(told[1], Publication)
    assert told[1].offset == 1  # the failed one's offset was given back
    assert [p.offset for p in delivered] == [1]
