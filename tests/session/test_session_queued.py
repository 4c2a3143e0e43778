"""The client session on an engine that queues publications (the SQLite engine): a
publish is answered once kept, publishes that follow it are queued behind it (one group
commit takes them), and any other command waits for them, so commands run in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from orbiter.config.settings import Config
from orbiter.engine.memory import MemoryPresenceStore
from orbiter.engine.sqlite import SqliteBroker
from orbiter.engine.sqlite_store import WriteBatch
from orbiter.services.pubsub import PubSub
from orbiter.session.session import ClientSession


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[SqliteBroker]:
    broker = SqliteBroker(tmp_path / "data.sqlite3")
    await broker.start()
    yield broker
    await broker.close()


def drain(session: ClientSession) -> list[dict[str, Any]]:
    items, session.outbox._items, session.outbox._size = session.outbox._items, [], 0
    return [orjson.loads(item) for item in items]


async def settled(session: ClientSession, count: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    for _ in range(500):
        got += drain(session)
        if len(got) >= count:
            return got
        await asyncio.sleep(0.002)
    raise AssertionError(f"{len(got)} of {count} messages came: {got}")


async def connected(broker: SqliteBroker) -> ClientSession:
    session = ClientSession(PubSub(Config(), broker, MemoryPresenceStore()), Config(), peer="t")
    await session.receive(orjson.dumps({"id": 1, "op": "connect"}))
    assert "result" in (await settled(session, 1))[0]
    return session


async def test_publishes_share_a_commit_and_are_answered_once_kept(broker: SqliteBroker) -> None:
    session = await connected(broker)
    transactions = 0
    write = broker._store.write

    def counted(batch: WriteBatch) -> None:
        nonlocal transactions
        transactions += 1
        write(batch)

    broker._store.write = counted  # type: ignore[method-assign]
    for i in range(20):  # one message each, as a client with many in flight sends them
        publish = {"id": 10 + i, "op": "publish", "channel": "chat:q", "data": i}
        await session.receive(orjson.dumps(publish))
    assert drain(session) == []  # nothing is answered before it is kept
    replies = await settled(session, 20)
    assert [r["id"] for r in replies] == list(range(10, 30))
    assert [r["result"]["offset"] for r in replies] == list(range(1, 21))
    assert transactions <= 2
    await session.finish()


async def test_a_command_after_publishes_runs_once_they_are_kept(broker: SqliteBroker) -> None:
    session = await connected(broker)
    await session.receive(
        b"\n".join(
            orjson.dumps(c)
            for c in (
                {"id": 2, "op": "publish", "channel": "chat:o", "data": "a"},
                {"id": 3, "op": "publish", "channel": "chat:o", "data": "b"},
                {
                    "id": 4,
                    "op": "subscribe",
                    "channel": "chat:o",
                    "since": {"offset": 0, "epoch": broker.void_epoch},
                },
            )
        )
    )
    replies = await settled(session, 3)
    assert [r["id"] for r in replies] == [2, 3, 4]
    subscribed = replies[2]["result"]
    assert subscribed["offset"] == 2  # the subscribe saw both publications
    assert [p["data"] for p in subscribed["publications"]] == ["a", "b"]
    await session.finish()


async def test_a_failed_commit_is_an_error_reply(broker: SqliteBroker) -> None:
    session = await connected(broker)
    writer = broker._store._writer
    assert writer is not None
    pages = writer.execute("PRAGMA page_count").fetchone()[0]
    writer.execute(f"PRAGMA max_page_count = {pages}")
    await session.receive(
        orjson.dumps({"id": 2, "op": "publish", "channel": "chat:f", "data": "y" * 30_000})
    )
    [reply] = await settled(session, 1)
    assert reply["id"] == 2
    assert reply["error"]["code"] == 100
    assert "could not store" in reply["error"]["message"]
    await session.finish()
