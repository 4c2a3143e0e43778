"""PubSub on an engine that queues publications (the SQLite engine): Orbited's
``event(keys)`` queues every key's publication before it waits, so they share a commit."""

from __future__ import annotations

from pathlib import Path

import pytest

from orbiter.config.settings import Config
from orbiter.engine.base import PublishFailed
from orbiter.engine.memory import MemoryPresenceStore
from orbiter.engine.sqlite import SqliteBroker
from orbiter.engine.sqlite_store import WriteBatch
from orbiter.protocol.keys import ConnectionKey
from orbiter.services.pubsub import PubSub


async def test_event_to_many_keys_is_one_commit(tmp_path: Path) -> None:
    broker = SqliteBroker(tmp_path / "data.sqlite3")
    await broker.start()
    try:
        pubsub = PubSub(Config(), broker, MemoryPresenceStore())
        await pubsub.publish("warm", 0)  # the streams' table is written once, before
        transactions = 0
        write = broker._store.write

        def counted(batch: WriteBatch) -> None:
            nonlocal transactions
            transactions += 1
            write(batch)

        broker._store.write = counted  # type: ignore[method-assign]
        keys = [ConnectionKey.parse(f"user{i}, 0, /chat") for i in range(5)]
        pubs = await pubsub.event(keys + keys[:1], "hello")  # the first key twice
        assert [(p.channel, p.offset) for p in pubs] == [
            *((key.channel, 1) for key in keys),
            (keys[0].channel, 2),
        ]
        assert transactions == 1
        writer = broker._store._writer
        assert writer is not None
        pages = writer.execute("PRAGMA page_count").fetchone()[0]
        writer.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(PublishFailed):
            await pubsub.event(keys[:1] * 2, "y" * 40_000)
    finally:
        await broker.close()
