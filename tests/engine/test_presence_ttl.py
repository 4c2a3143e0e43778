"""The presence contract's TTL on every engine: an entry lives while its node refreshes it, and one
its node stopped refreshing (the node gone without removing it) disappears within the TTL.

Memory, SQLite (whose presence is the memory store: it is the process's) and Redis
(a real ``redis-server``, ``tests/support/redis_server.py``), in real time with a TTL
of 0.6 s. On Redis the dying node and the one reading are two stores on one Redis;
an embedded engine's presence is its own process's, so there they are the same
store, read after it stopped refreshing. The memory store's timing to the tick runs
on the manual clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from orbiter.engine.base import PresenceStore
from orbiter.engine.memory import MemoryPresenceStore
from orbiter.engine.redis import RedisPresenceStore
from orbiter.engine.sqlite import SqliteBroker
from orbiter.model import ClientInfo
from tests.support.clock import ManualClock

TTL = 0.6
ANN = ClientInfo("c1", "ann", {"x": 1})


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def presence_of(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[[], PresenceStore]]:
    """Makes the presence store of one more node on the engine."""
    made: list[PresenceStore] = []
    if request.param == "redis":
        url = request.getfixturevalue("redis_server").url
        prefix = request.getfixturevalue("redis_prefix")

        def node() -> PresenceStore:
            made.append(RedisPresenceStore(url, prefix=prefix, ttl=TTL))
            return made[-1]
    else:
        broker = SqliteBroker(tmp_path / "data.sqlite3") if request.param == "sqlite" else None
        if broker is not None:
            await broker.start()
        own = MemoryPresenceStore(ttl=TTL)
        made.append(own)

        def node() -> PresenceStore:
            return own

    yield node
    for store in made:
        await store.close()
    if request.param == "sqlite" and broker is not None:
        await broker.close()


async def test_an_entry_lives_past_its_ttl_while_its_node_refreshes_it(
    presence_of: Callable[[], PresenceStore],
) -> None:
    store = presence_of()
    assert await store.add("room", ANN)
    await asyncio.sleep(TTL * 2.5)
    assert await store.clients("room") == [ANN]
    assert await store.channels() == {"room": 1}
    assert await store.remove("room", "c1") == ANN


async def test_an_entry_its_node_stopped_refreshing_disappears_within_the_ttl(
    presence_of: Callable[[], PresenceStore],
) -> None:
    dying, reader = presence_of(), presence_of()
    assert await dying.add("room", ANN)  # never removed: its session left no word
    assert not await dying.add("hall", ClientInfo("c2", None))  # anonymous: no join
    assert await reader.channels() == {"room": 1, "hall": 1}
    await dying.close()  # its node is gone: nothing refreshes the entries
    await asyncio.sleep(TTL * 1.6)
    assert await reader.clients("room") == []
    assert await reader.channels() == {}
    assert await reader.remove("room", "c1") is None  # no leave for what expired
    assert await reader.add("room", ClientInfo("c3", "ann"))  # ann joins anew


async def test_the_memory_store_expires_to_the_tick(manual_clock: ManualClock) -> None:
    store = MemoryPresenceStore(ttl=30.0, clock=manual_clock)
    await store.add("room", ANN)
    await manual_clock.advance(95.0)  # refreshed every 10 s
    assert await store.clients("room") == [ANN]
    await store.close()  # last refreshed at 90 s
    await manual_clock.advance(24.9)
    assert await store.channels() == {"room": 1}
    await manual_clock.advance(0.1)
    assert await store.channels() == {}
    assert await store.clients("room") == []
