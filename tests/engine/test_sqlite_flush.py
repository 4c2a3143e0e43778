"""``Broker.flush`` on the SQLite engine: the publications of one read go to the writer in
that read's loop iteration (one group commit for them all), from the engine, the fast
HTTP publish path and the native WebSocket's read; answers still come in order, and
only once their commit is in the file.

The writer's ``submit`` is wrapped (on this broker's writer object, a plain Python
one) to note the loop iteration it is called in; a callback that schedules itself
again counts the iterations.
"""

from __future__ import annotations

import asyncio
import sqlite3
import struct
import tomllib
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from orbiter.bench.spawn import BENCH_CONFIG
from orbiter.config.settings import config_from_dict
from orbiter.engine.base import HistoryPolicy
from orbiter.engine.sqlite import SqliteBroker
from orbiter.http.fast_publish import FastPublishProtocol, _DateHeader
from orbiter.node import Node
from orbiter.transports.websocket import NativeWebSocket, _Endpoint
from tests.support.profile_publish_path import CountingTransport
from tests.support.standins import StandInTakeover

POLICY = HistoryPolicy(size=100, ttl=600.0, meta_ttl=3600.0)


class Ticker:
    """Counts loop iterations: a callback that runs once an iteration (bounded)."""

    def __init__(self, limit: int = 100_000) -> None:
        self.ticks = 0
        self._limit = limit
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        self.ticks += 1
        if self.ticks < self._limit:
            self._handle = self._loop.call_soon(self._tick)

    def stop(self) -> None:
        self._handle.cancel()


def watch_submits(broker: SqliteBroker, ticker: Ticker) -> list[tuple[int, int]]:
    """(iteration, publications) of every transaction with publications handed to the
    writer from now on."""
    submits: list[tuple[int, int]] = []
    writer = broker._writer
    assert writer is not None
    submit = writer.submit

    def noted(function: Callable[..., Any], *args: Any, done: Any, wait: float = 0.0) -> bool:
        if function == broker._store.write and args[0].publications:  # not upkeep alone
            submits.append((ticker.ticks, len(args[0].publications)))
        return submit(function, *args, done=done, wait=wait)

    writer.submit = noted  # type: ignore[method-assign]
    return submits


def stored_offsets(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        blobs = conn.execute("SELECT rows FROM commits ORDER BY id").fetchall()
    conn.close()
    return sorted(offset for (blob,) in blobs for _, offset, _, _, _ in orjson.loads(blob))


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[SqliteBroker]:
    # No wait for the flushed commit (test_sqlite_commit_wait.py): it stays in flight.
    broker = SqliteBroker(tmp_path / "orbiter.sqlite3", commit_wait=0)
    await broker.start()
    yield broker
    await broker.close()


async def test_flush_hands_what_is_queued_to_the_writer_at_once_in_one_commit(
    broker: SqliteBroker,
) -> None:
    ticker = Ticker()
    submits = watch_submits(broker, ticker)
    futures = [broker.publish_soon("c", i, POLICY) for i in range(3)]
    assert submits == []  # queued: the cut waits for the next iteration...
    broker.flush()
    assert submits == [(ticker.ticks, 3)]  # ...unless flushed: now, all three together
    # A transaction in flight: flush changes nothing, what follows waits for it.
    later = [broker.publish_soon("c", i, POLICY) for i in range(3, 5)]
    broker.flush()
    assert len(submits) == 1
    pubs = await asyncio.gather(*futures, *later)
    assert [p.offset for p in pubs] == [1, 2, 3, 4, 5]
    assert [n for _, n in submits] == [3, 2]  # the two behind the first: one commit
    await asyncio.sleep(0)  # the cancelled cut (if it ran) would have no work
    assert [n for _, n in submits] == [3, 2]
    ticker.stop()


def sqlite_node(tmp_path: Path) -> Node:
    config = config_from_dict(tomllib.loads(BENCH_CONFIG.format(session="", limits="")))
    engine = replace(config.engine, kind="sqlite", data_dir=str(tmp_path))
    return Node(replace(config, engine=engine))


def publish_request(seq: int) -> bytes:
    body = b'{"channel":"c","data":%d}' % seq
    return (
        b"POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )


class Answers(CountingTransport):
    """The publisher's end: each answer, and what the file held when it was written."""

    def __init__(self, path: Path, expected: int) -> None:
        super().__init__()
        self.path = path
        self.answers: list[dict[str, Any]] = []
        self.stored_then: list[list[int]] = []
        self.expected = expected
        self.done = asyncio.Event()

    def write(self, data: bytes) -> None:
        super().write(data)
        for response in data.split(b"HTTP/1.1 ")[1:]:
            assert response.startswith(b"200 OK"), response
            self.answers.append(orjson.loads(response.split(b"\r\n\r\n", 1)[1]))
            self.stored_then.append(stored_offsets(self.path))
        if len(self.answers) >= self.expected:
            self.done.set()


async def test_a_fast_path_read_is_committed_from_its_own_iteration(tmp_path: Path) -> None:
    node = sqlite_node(tmp_path)
    await node.start()
    try:
        broker = node.broker
        assert isinstance(broker, SqliteBroker)
        answers = Answers(broker.path, 4)
        protocol = FastPublishProtocol(StandInTakeover(answers), node, _DateHeader())  # type: ignore[arg-type]
        protocol.connection_made(answers)  # type: ignore[arg-type]
        ticker = Ticker()
        submits = watch_submits(broker, ticker)
        read_at = ticker.ticks
        protocol.data_received(b"".join(publish_request(i) for i in range(4)))
        assert submits == [(read_at, 4)]  # the read's four, one commit, this iteration
        await asyncio.wait_for(answers.done.wait(), 10)
        ticker.stop()
        assert [a["offset"] for a in answers.answers] == [1, 2, 3, 4]  # in order
        for answer, stored in zip(answers.answers, answers.stored_then, strict=True):
            assert answer["offset"] in stored  # OK only once it is in the file
    finally:
        await node.close()


def client_frame(text: bytes) -> bytes:
    """A masked text frame as a client sends it (short payloads)."""
    mask = b"\x01\x02\x03\x04"
    assert len(text) < 126
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(text))
    return struct.pack("!BB", 0x81, 0x80 | len(text)) + mask + masked


async def test_a_native_read_is_committed_from_the_iteration_that_runs_it(
    tmp_path: Path,
) -> None:
    node = sqlite_node(tmp_path)
    await node.start()
    endpoint = _Endpoint(node)
    try:
        broker = node.broker
        assert isinstance(broker, SqliteBroker)
        session = node.new_session("127.0.0.1")
        transport = CountingTransport()
        socket = NativeWebSocket(endpoint, None, session, "127.0.0.1")
        socket.connection_made(transport)  # type: ignore[arg-type]
        await session.receive('{"id":1,"op":"connect"}')
        ticker = Ticker()
        submits = watch_submits(broker, ticker)
        read_at = ticker.ticks
        commands = [
            {"id": 10 + i, "op": "publish", "channel": "bench1", "data": i} for i in range(3)
        ]
        socket.data_received(b"".join(client_frame(orjson.dumps(c)) for c in commands))
        assert socket._receiving is None  # publishes only: handled at once, no task
        for _ in range(1000):  # bounded: the commit returns
            if broker._idle.is_set() and submits:
                break
            await asyncio.sleep(0.005)
        ticker.stop()
        # The read's three publishes are queued by data_received itself and handed
        # over in the read's own iteration, together, not an iteration later.
        assert submits == [(read_at, 3)]
        assert stored_offsets(broker.path) == [1, 2, 3]
    finally:
        endpoint.wheel.close()
        await node.close()
