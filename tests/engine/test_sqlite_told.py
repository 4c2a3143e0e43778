"""``Broker.publish_then`` on the SQLite engine: a queued publication's callback is told from
the commit's report itself (an iteration before a future's callbacks would run), only
once the commit returned, in queue order; a failed commit tells :class:`PublishFailed`;
what a callback queues goes in the next transaction. The fast HTTP publish path answers
from it, in the report's iteration. Engines that only have futures keep working (the
base class's ``publish_then`` waits on the future).

Iterations are counted as in ``test_sqlite_flush.py``; the commit's report is noted by
wrapping the ``done`` the engine gives its writer thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from orbiter.config.settings import Config
from orbiter.engine.base import PublishFailed
from orbiter.engine.sqlite import SqliteBroker
from orbiter.engine.sqlite_store import WriteBatch
from orbiter.http.api_rules import Outcome, publish_body_then
from orbiter.http.fast_publish import FastPublishProtocol, _DateHeader
from orbiter.model import Publication
from orbiter.node import Node
from tests.engine.test_sqlite_flush import (
    POLICY,
    Answers,
    Ticker,
    publish_request,
    sqlite_node,
    stored_offsets,
)
from tests.support.standins import StandInTakeover
from tests.support.waiting import until
from tests.support.wrapped_broker import WrappedBroker


class Reports:
    """Notes the iteration of every commit report (with publications) and what the engine
    looked like right after it: idle, a transaction in flight."""

    def __init__(self, broker: SqliteBroker, ticker: Ticker) -> None:
        self.ticks: list[int] = []
        self.after: list[tuple[bool, bool]] = []
        writer = broker._writer
        assert writer is not None
        submit = writer.submit

        def noted(function: Callable[..., Any], *args: Any, done: Any, wait: float = 0.0) -> bool:
            if function != broker._store.write or not args[0].publications:
                return submit(function, *args, done=done, wait=wait)

            def reported(result: Any, error: BaseException | None) -> None:
                self.ticks.append(ticker.ticks)
                done(result, error)
                self.after.append((broker._idle.is_set(), broker._in_flight is not None))

            return submit(function, *args, done=reported, wait=wait)

        writer.submit = noted  # type: ignore[method-assign]


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[SqliteBroker]:
    broker = SqliteBroker(tmp_path / "orbiter.sqlite3")
    await broker.start()
    yield broker
    await broker.close()


async def test_the_callback_is_told_from_the_commits_report_once_it_is_in_the_file(
    broker: SqliteBroker,
) -> None:
    ticker = Ticker()
    reports = Reports(broker, ticker)
    told: list[tuple[int, Outcome, list[int]]] = []

    def done(outcome: Publication | BaseException) -> None:
        told.append((ticker.ticks, outcome, stored_offsets(broker.path)))

    for i in range(3):
        assert broker.publish_then("c", i, POLICY, None, done)
    future = broker.publish_soon("c", 3, POLICY)
    future_told: list[int] = []
    future.add_done_callback(lambda _: future_told.append(ticker.ticks))
    assert told == []  # never within the call
    broker.flush()
    await until(lambda: bool(future_told))
    ticker.stop()
    assert len(reports.ticks) == 1  # one commit for the four
    assert [tick for tick, _, _ in told] == reports.ticks * 3  # in the report's iteration...
    assert future_told == [reports.ticks[0] + 1]  # ...where a future's callback runs one later
    pubs = [outcome for _, outcome, _ in told]
    assert all(isinstance(pub, Publication) for pub in pubs)
    assert [pub.offset for pub in pubs] == [1, 2, 3]  # type: ignore[union-attr]
    assert [pub.data for pub in pubs] == [0, 1, 2]  # type: ignore[union-attr]
    for pub, (_, _, stored) in zip(pubs, told, strict=True):
        assert pub.offset in stored  # type: ignore[union-attr]


async def test_a_failed_commit_tells_publish_failed_and_delivers_nothing(
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
    for i in range(2):
        broker.publish_then("c", i, POLICY, None, told.append)
    await until(lambda: len(told) == 2)
    assert all(isinstance(outcome, PublishFailed) for outcome in told)
    assert delivered == []
    store.write = write  # type: ignore[method-assign]
    broker.publish_then("c", "after", POLICY, None, told.append)
    await until(lambda: len(told) == 3)
    assert isinstance(told[2], Publication)
    assert told[2].offset == 1  # the failed ones' offsets were given back
    assert [p.offset for p in delivered] == [1]


async def test_what_a_callback_queues_goes_in_the_next_transaction(broker: SqliteBroker) -> None:
    ticker = Ticker()
    reports = Reports(broker, ticker)
    told: list[Outcome] = []

    def first(outcome: Outcome) -> None:
        told.append(outcome)
        # Queued amid the report: neither cut nor flushed within it (the report goes on
        # with its other publications), but in the next transaction, cut at its end.
        broker.publish_then("c", "second", POLICY, None, told.append)
        broker.flush()

    broker.publish_then("c", "first", POLICY, None, first)
    broker.publish_then("c", "with the first", POLICY, None, told.append)
    await until(lambda: len(told) == 3)
    ticker.stop()
    offsets = [o.offset for o in told if isinstance(o, Publication)]
    assert offsets == [1, 2, 3]
    assert [o.data for o in told if isinstance(o, Publication)] == [
        "first",
        "with the first",
        "second",
    ]
    # After the first report the second transaction was in flight: not idle (close waits).
    assert reports.after[0] == (False, True)
    await until(lambda: len(reports.after) == 2)
    assert reports.after[1] == (True, False)
    assert stored_offsets(broker.path) == [1, 2, 3]


async def test_the_fast_path_answers_in_the_iteration_of_the_commits_report(
    tmp_path: Path,
) -> None:
    node = sqlite_node(tmp_path)
    await node.start()
    try:
        broker = node.broker
        assert isinstance(broker, SqliteBroker)
        answers = Answers(broker.path, 8)
        protocol = FastPublishProtocol(StandInTakeover(answers), node, _DateHeader())  # type: ignore[arg-type]
        protocol.connection_made(answers)  # type: ignore[arg-type]
        ticker = Ticker()
        reports = Reports(broker, ticker)
        written: list[int] = []
        write = answers.write

        def noted(data: bytes) -> None:
            written.append(ticker.ticks)
            write(data)

        answers.write = noted  # type: ignore[method-assign]
        protocol.data_received(b"".join(publish_request(i) for i in range(4)))
        await until(lambda: len(answers.answers) >= 4)
        # What came while the read waited is served once it is answered (one commit).
        protocol.data_received(b"".join(publish_request(i) for i in range(4, 8)))
        await until(lambda: answers.done.is_set())
        ticker.stop()
        assert written == reports.ticks  # each read's four answers: the report's iteration
        assert len(written) == 2
        assert [a["offset"] for a in answers.answers] == list(range(1, 9))
        for answer, stored in zip(answers.answers, answers.stored_then, strict=True):
            assert answer["offset"] in stored  # OK only once it is in the file
    finally:
        await node.close()


async def test_a_batch_is_told_its_answer_once_all_its_publications_are_kept(
    tmp_path: Path,
) -> None:
    node = Node(Config(), broker=SqliteBroker(tmp_path / "data.sqlite3"))
    await node.start()
    try:
        told: list[tuple[int, Outcome]] = []
        items = [{"channel": f"b{i % 2}", "data": i} for i in range(5)]
        body = orjson.dumps({"publications": items})
        answer = publish_body_then(node.pubsub, body, lambda *told_: told.append(told_), 7)
        assert answer is None
        assert told == []
        await until(lambda: bool(told))
        ((slot, outcome),) = told
        assert slot == 7
        assert isinstance(outcome, dict)
        assert [(r["channel"], r["offset"]) for r in outcome["results"]] == [
            ("b0", 1),
            ("b1", 1),
            ("b0", 2),
            ("b1", 2),
            ("b0", 3),
        ]
    finally:
        await node.close()


async def test_a_batch_refused_midway_is_not_told_and_its_queued_part_is_kept(
    tmp_path: Path,
) -> None:
    broker = SqliteBroker(tmp_path / "data.sqlite3", max_streams=1)
    node = Node(Config(), broker=broker)
    await node.start()
    try:
        told: list[tuple[int, Outcome]] = []
        items = [{"channel": "a", "data": 1}, {"channel": "b", "data": 2}]
        with pytest.raises(Exception, match="channels"):
            publish_body_then(node.pubsub, orjson.dumps({"publications": items}), told.append, 0)  # type: ignore[arg-type]
        await until(lambda: broker._idle.is_set())
        await asyncio.sleep(0.01)
        assert told == []  # the request was answered with the refusal
        page = await node.pubsub.history("a")
        assert [p.data for p in page.publications] == [1]
    finally:
        await node.close()


class FuturesOnly(WrappedBroker):
    """An engine with ``publish_soon`` alone (as the Redis engine): the base class's
    ``publish_then`` waits on its futures."""


async def test_an_engine_with_futures_alone_tells_through_them(tmp_path: Path) -> None:
    inner = SqliteBroker(tmp_path / "data.sqlite3")
    broker = FuturesOnly(inner)
    await broker.start()
    try:
        told: list[Outcome] = []
        assert broker.publish_then("c", 1, POLICY, None, told.append)
        await until(lambda: bool(told))
        assert isinstance(told[0], Publication)
        assert told[0].offset == 1
        inner._store.write = _refuse  # type: ignore[method-assign]
        broker.publish_then("c", 2, POLICY, None, told.append)
        await until(lambda: len(told) == 2)
        assert isinstance(told[1], PublishFailed)
    finally:
        await broker.close()


def _refuse(batch: WriteBatch) -> None:
    raise sqlite3.OperationalError("disk I/O error")
