"""Persistent STOMP queue messages without a network: the queue file and the broker's use of it.

The store (:class:`DurableQueues`) keeps rows across a close and reopen, in order, and
writes what is asked in one loop iteration in one transaction. Through a real broker on
a data directory: a persistent SEND's RECEIPT waits for its commit, a failed write (a
really full database) answers ERROR with nothing counted, and a new broker on the same
directory queues again what was not consumed (redelivered to a client that had not
ACKed it, within the budgets), and nothing that was consumed or not persistent.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from orbiter.auth import Authenticator
from orbiter.config.settings import Config
from orbiter.config.stomp import StompSettings
from orbiter.config.storage import EngineSettings
from orbiter.engine.base import EngineUnavailable
from orbiter.engine.memory import MemoryBroker, MemoryPresenceStore
from orbiter.protocol.stomp import Frame, FrameParser, encode_frame
from orbiter.services.outbox import Pull
from orbiter.services.pubsub import PubSub
from orbiter.services.stomp.broker import StompBroker
from orbiter.services.stomp.durable_queue import DurableQueues
from orbiter.services.stomp.queue_file import StoredMessage
from orbiter.services.stomp.session import StompSession


def _message(key: int, queue: str = "q", body: bytes = b"m", expires: float = math.inf) -> Any:
    return StoredMessage(key, queue, (("x-n", str(key)),), body, expires, "10.0.0.1")


async def test_rows_come_back_in_order_and_deleted_ones_do_not(tmp_path: Path) -> None:
    store = DurableQueues(tmp_path / "q.sqlite3")
    assert await store.open() == []
    futures = [store.store(_message(store.new_key(), expires=2e9 + k)) for k in range(3)]
    await asyncio.gather(*futures)
    store.delete(2)
    await store.synced()
    await store.close()
    again = DurableQueues(tmp_path / "q.sqlite3")
    rows = await again.open()
    assert [(r.key, r.headers, r.expires) for r in rows] == [
        (1, (("x-n", "1"),), 2e9),
        (3, (("x-n", "3"),), 2e9 + 2),
    ]
    assert again.new_key() == 4  # after the newest row, never a key given before
    await again.close()


async def test_one_loop_iteration_is_one_transaction(tmp_path: Path) -> None:
    store = DurableQueues(tmp_path / "q.sqlite3")
    await store.open()
    calls: list[int] = []
    write = store._file.write

    def counted(inserts: list[StoredMessage], deletes: list[int]) -> None:
        calls.append(len(inserts))
        write(inserts, deletes)

    store._file.write = counted  # type: ignore[method-assign]
    await asyncio.gather(*[store.store(_message(store.new_key())) for _ in range(50)])
    assert calls == [50]
    await store.close()


async def test_a_second_server_on_the_file_is_refused(tmp_path: Path) -> None:
    first = DurableQueues(tmp_path / "q.sqlite3")
    await first.open()
    with pytest.raises(EngineUnavailable, match="in use by another orbiter process"):
        await DurableQueues(tmp_path / "q.sqlite3").open()
    await first.close()
    (tmp_path / "bad.sqlite3").write_bytes(b"not a database at all" * 100)
    with pytest.raises(EngineUnavailable, match="damaged or not an orbiter queue file"):
        await DurableQueues(tmp_path / "bad.sqlite3").open()


# ------------------------------------------------------------------ through a broker


def _config(data_dir: Path, **stomp: Any) -> Config:
    return replace(
        Config(),
        engine=EngineSettings(data_dir=str(data_dir)),
        stomp=StompSettings(**stomp),
    )


async def _broker(config: Config) -> StompBroker:
    engine = MemoryBroker()
    await engine.start()
    broker = StompBroker(
        config, PubSub(config, engine, MemoryPresenceStore()), Authenticator(config)
    )
    await broker.start()
    return broker


class Client:
    """A session of the broker and what it wrote, read as frames."""

    def __init__(self, broker: StompBroker, peer: str = "10.0.0.1") -> None:
        self.session: StompSession = broker.new_session(peer=peer, transport="test")
        self._pull = Pull(self.session.outbox)
        self._parser = FrameParser(version="1.2")

    async def send(self, command: str, *headers: tuple[str, str], body: bytes = b"") -> None:
        await self.session.receive(encode_frame(command, list(headers), body))

    async def written(self) -> list[Frame]:
        try:
            batch = await asyncio.wait_for(self._pull.take(), 0.2)
        except TimeoutError:
            return []
        return self._parser.feed(b"".join(batch))


async def _client(broker: StompBroker) -> Client:
    client = Client(broker)
    await client.send("CONNECT", ("accept-version", "1.2"), ("host", "x"))
    assert [f.command for f in await client.written()] == ["CONNECTED"]
    return client


async def _persist(client: Client, body: bytes, receipt: str = "r") -> None:
    await client.send(
        "SEND",
        ("destination", "/queue/jobs"),
        ("persistent", "true"),
        ("receipt", receipt),
        body=body,
    )


async def test_the_receipt_waits_for_the_commit(tmp_path: Path) -> None:
    broker = await _broker(_config(tmp_path))
    assert broker.durable is not None
    producer = await _client(broker)
    writer = broker.durable._writer
    assert writer is not None
    held, holding = threading.Event(), threading.Event()

    def hold() -> None:  # the writer thread is busy (a slow disk)
        holding.set()
        held.wait(10)

    writer.submit(hold, done=lambda *_: None)
    await asyncio.to_thread(holding.wait, 10)
    sending = asyncio.create_task(_persist(producer, b"one"))
    assert await producer.written() == []  # not committed: no RECEIPT
    assert broker.queues.bytes > 0  # but counted in the budgets while it is written
    held.set()
    await sending
    assert [f.command for f in await producer.written()] == ["RECEIPT"]
    await broker.shutdown("bye", grace=0.01)


async def test_a_failed_write_answers_error_and_counts_nothing(tmp_path: Path) -> None:
    broker = await _broker(_config(tmp_path))
    assert broker.durable is not None
    producer = await _client(broker)
    await _persist(producer, b"kept")
    assert [f.command for f in await producer.written()] == ["RECEIPT"]
    kept = broker.queues.bytes
    conn = broker.durable._file._conn
    assert conn is not None
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")  # the database is full
    await _persist(producer, b"x" * 60_000)
    (error,) = await producer.written()
    assert error.command == "ERROR"
    assert error.get("message") == "not stored"
    assert error.get("receipt-id") == "r"
    assert broker.queues.bytes == kept
    # The node goes on: another connection sends (in memory) and consumes both.
    other = await _client(broker)
    await other.send("SEND", ("destination", "/queue/jobs"), body=b"memory")
    await other.send("SUBSCRIBE", ("id", "1"), ("destination", "/queue/jobs"))
    assert [f.body for f in await other.written()] == [b"kept", b"memory"]
    await broker.shutdown("bye", grace=0.01)


async def test_a_new_broker_queues_again_what_was_not_consumed(tmp_path: Path) -> None:
    broker = await _broker(_config(tmp_path))
    producer = await _client(broker)
    for n in range(4):
        await _persist(producer, b"p%d" % n, f"r{n}")
    await producer.send("SEND", ("destination", "/queue/jobs"), ("receipt", "m"), body=b"mem")
    assert len(await producer.written()) == 5
    consumer = await _client(broker)
    await consumer.send(
        "SUBSCRIBE", ("id", "1"), ("destination", "/queue/jobs"), ("ack", "client-individual")
    )
    first, second, *_ = await consumer.written()
    assert (first.body, second.body) == (b"p0", b"p1")
    await consumer.send("ACK", ("id", first.get("ack") or ""), ("receipt", "a"))
    assert [f.command for f in await consumer.written()] == ["RECEIPT"]
    await broker.shutdown("bye", grace=0.01)  # p1 was delivered, never ACKed

    broker = await _broker(_config(tmp_path))
    consumer = await _client(broker)
    await consumer.send("SUBSCRIBE", ("id", "1"), ("destination", "/queue/jobs"))
    assert [f.body for f in await consumer.written()] == [b"p1", b"p2", b"p3"]
    await broker.shutdown("bye", grace=0.01)  # ack auto: consumed when written

    broker = await _broker(_config(tmp_path))
    assert broker.queues.bytes == 0
    await broker.shutdown("bye", grace=0.01)


async def test_a_restart_keeps_the_queues_within_their_budgets(tmp_path: Path) -> None:
    broker = await _broker(_config(tmp_path))
    producer = await _client(broker)
    for n in range(6):
        await _persist(producer, b"x" * 1000, f"r{n}")
    await producer.send(
        "SEND",
        ("destination", "/queue/brief"),
        ("persistent", "true"),
        ("expiration", "50"),
        ("receipt", "e"),
        body=b"brief",
    )
    assert len(await producer.written()) == 7
    await asyncio.sleep(0.1)  # the brief one's deadline passes while the server is down
    jobs = broker.queues.find("jobs")
    assert jobs is not None
    size = jobs.bytes // 6
    await broker.shutdown("bye", grace=0.01)
    broker = await _broker(_config(tmp_path, max_queue_bytes=size * 4))
    queue = broker.queues.find("jobs")
    assert queue is not None
    assert len(queue.pending) == 4
    assert broker.queues.bytes == size * 4
    assert broker.queues.find("brief") is None
    await broker.shutdown("bye", grace=0.01)
    rows = sqlite3.connect(tmp_path / "stomp-queues.sqlite3").execute(
        "SELECT count(*) FROM messages"
    )
    assert rows.fetchone()[0] == 4  # the two past the budget were deleted


async def test_a_transaction_stores_its_persistent_sends_at_commit_only(tmp_path: Path) -> None:
    broker = await _broker(_config(tmp_path))
    producer = await _client(broker)
    for tx, body in (("t1", b"aborted"), ("t2", b"committed")):
        await producer.send("BEGIN", ("transaction", tx))
        await producer.send(
            "SEND",
            ("destination", "/queue/jobs"),
            ("persistent", "true"),
            ("transaction", tx),
            body=body,
        )
    assert broker.queues.bytes == 0  # held by the transactions, nothing stored
    await producer.send("ABORT", ("transaction", "t1"))
    await producer.send("COMMIT", ("transaction", "t2"), ("receipt", "c"))
    assert [f.command for f in await producer.written()] == ["RECEIPT"]
    await broker.shutdown("bye", grace=0.01)
    rows = sqlite3.connect(tmp_path / "stomp-queues.sqlite3").execute("SELECT body FROM messages")
    assert rows.fetchall() == [(b"committed",)]
