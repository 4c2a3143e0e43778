"""The publish fast path on an engine that queues publications (the SQLite engine's
group commit): every request of a read is queued at once, so pipelined requests share
one transaction; answers go out in order, each only once its publication is kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from orbiter.config.settings import Config
from orbiter.engine.sqlite import SqliteBroker
from orbiter.engine.sqlite_store import WriteBatch
from orbiter.http.fast_publish import FastPublishProtocol, _DateHeader
from orbiter.node import Node
from tests.support.standins import StandInTakeover, StandInTransport


def request(body: dict[str, Any], *, close: bool = False) -> bytes:
    data = orjson.dumps(body)
    connection = b"Connection: close\r\n" if close else b""
    return (
        b"POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"%sContent-Length: %d\r\n\r\n%s" % (connection, len(data), data)
    )


def answers(out: bytes) -> list[tuple[int, dict[str, Any]]]:
    parts = out.split(b"HTTP/1.1 ")[1:]
    return [(int(p[:3]), orjson.loads(p.split(b"\r\n\r\n", 1)[1])) for p in parts]


class Counted:
    """The broker's store, its transactions counted (each still written for real)."""

    def __init__(self, broker: SqliteBroker) -> None:
        self.transactions = 0
        self._write = broker._store.write
        broker._store.write = self.write  # type: ignore[method-assign]

    def write(self, batch: WriteBatch) -> None:
        self.transactions += 1
        self._write(batch)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    # No bounded wait for a flushed commit: answers come from a later iteration, so these
    # tests see the read wait (the wait's own tests: tests/engine/test_sqlite_commit_wait.py).
    node = Node(Config(), broker=SqliteBroker(tmp_path / "data.sqlite3", commit_wait=0))
    await node.start()
    yield node
    await node.close()


async def _settle(transport: StandInTransport, count: int) -> None:
    for _ in range(500):
        if len(answers(bytes(transport.out))) >= count:
            return
        await asyncio.sleep(0.002)


async def test_pipelined_requests_share_one_commit_and_are_answered_in_order(node: Node) -> None:
    counted = Counted(node.broker)  # type: ignore[arg-type]
    transport = StandInTransport()
    protocol = FastPublishProtocol(StandInTakeover(transport), node, _DateHeader())  # type: ignore[arg-type]
    protocol.connection_made(transport)  # type: ignore[arg-type]
    pipelined = b"".join(request({"channel": f"c{i % 3}", "data": i}) for i in range(30))
    protocol.data_received(pipelined)
    assert transport.out == b""  # nothing is answered before it is kept
    assert not transport.reading
    await _settle(transport, 30)
    got = answers(bytes(transport.out))
    assert [status for status, _ in got] == [200] * 30
    assert [body["offset"] for _, body in got] == [i // 3 + 1 for i in range(30)]
    assert counted.transactions == 1
    assert transport.reading
    # A batch request queues all its publications too: one more transaction.
    items = [{"channel": "b", "data": i} for i in range(50)]
    protocol.data_received(request({"publications": items}) + request({"channel": "c0", "data": 0}))
    await _settle(transport, 32)
    (status, batch), (_, single) = answers(bytes(transport.out))[30:]
    assert status == 200
    assert [r["offset"] for r in batch["results"]] == list(range(1, 51))
    assert single["offset"] == 11
    assert counted.transactions == 2
    protocol.connection_lost(None)


async def test_a_request_after_connection_close_is_not_served(node: Node) -> None:
    transport = StandInTransport()
    protocol = FastPublishProtocol(StandInTakeover(transport), node, _DateHeader())  # type: ignore[arg-type]
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(
        request({"channel": "a", "data": 1})
        + request({"channel": "a", "data": 2}, close=True)
        + request({"channel": "a", "data": 3})
    )
    await _settle(transport, 2)
    await asyncio.sleep(0.05)
    assert [body["offset"] for _, body in answers(bytes(transport.out))] == [1, 2]
    assert transport.closed
    page = await node.pubsub.history("a")
    assert [p.data for p in page.publications] == [1, 2]
    protocol.connection_lost(None)


async def test_a_failed_commit_answers_503_in_its_place(node: Node) -> None:
    broker = node.broker
    assert isinstance(broker, SqliteBroker)
    transport = StandInTransport()
    protocol = FastPublishProtocol(StandInTakeover(transport), node, _DateHeader())  # type: ignore[arg-type]
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(request({"channel": "a", "data": "small"}))
    await _settle(transport, 1)
    writer = broker._store._writer
    assert writer is not None
    pages = writer.execute("PRAGMA page_count").fetchone()[0]
    writer.execute(f"PRAGMA max_page_count = {pages}")
    protocol.data_received(request({"channel": "a", "data": "y" * 50_000}))
    await _settle(transport, 2)
    writer.execute("PRAGMA max_page_count = 1073741823")
    protocol.data_received(request({"channel": "a", "data": "after"}))
    await _settle(transport, 3)
    got = answers(bytes(transport.out))
    assert [status for status, _ in got] == [200, 503, 200]
    assert "could not store" in got[1][1]["error"]["message"]
    assert [got[0][1]["offset"], got[2][1]["offset"]] == [1, 2]
    protocol.connection_lost(None)


async def test_a_publish_while_the_engine_closes_is_a_503_not_a_500(node: Node) -> None:
    transport = StandInTransport()
    protocol = FastPublishProtocol(StandInTakeover(transport), node, _DateHeader())  # type: ignore[arg-type]
    protocol.connection_made(transport)  # type: ignore[arg-type]
    await node.broker.close()  # as at shutdown, before the connection is gone
    items = [{"channel": "b", "data": 1}]
    protocol.data_received(request({"channel": "a", "data": 1}) + request({"publications": items}))
    await _settle(transport, 2)
    got = answers(bytes(transport.out))
    assert [status for status, _ in got] == [503, 503]
    assert all("closed" in body["error"]["message"] for _, body in got)
    assert not transport.closed  # an answer, not an internal error that drops the connection
    protocol.connection_lost(None)
