"""Readers and publishers without credentials cannot fill the channel table or memory.

Issue 13, attacks 3 and 5, against a real server: reading channels nobody
published stores nothing (``limits.max_channels`` stays free for the app),
and history is bounded over the node by ``history.max_bytes``, oldest first,
with recovery past what was dropped answered ``recovered: false``.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Any

import aiohttp

from orbiter import AsyncClient
from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient


async def _stats(srv: RunningServer) -> dict[str, Any]:
    async with AsyncClient(srv.url, api_key="k") as api:
        return await api.stats()


async def test_reading_random_channels_stores_none_and_leaves_room_for_the_app(
    start_server: Callable[..., RunningServer],
) -> None:
    srv = start_server(
        '[server]\napi_key = "k"\n[limits]\nmax_channels = 20\n'
        '[[channel]]\nmatch = "*"\nclient_publish = true\n'
    )
    names = [f"probe:{secrets.token_hex(6)}" for _ in range(300)]
    async with aiohttp.ClientSession() as http:

        async def poll(name: str) -> None:
            async with http.get(srv.url + "/poll", params={"channel": name}) as r:
                assert r.status == 200, await r.text()
                assert (await r.json())["offset"] == 0

        for start in range(0, len(names), 50):
            await asyncio.gather(*(poll(name) for name in names[start : start + 50]))
        for name in names[:20]:  # one at a time: each stream is a connection while open
            async with http.get(srv.url + "/connection/sse", params={"channel": name}) as r:
                assert r.status == 200, await r.text()
    reader = await NativeClient.open(srv.ws_url)
    for name in names[:100]:
        reply = await reader.call("subscribe", channel=name)
        assert reply["result"]["offset"] == 0
        assert "result" in await reader.call("unsubscribe", channel=name)
    await reader.close()

    stats = await _stats(srv)
    assert stats["channels"] == 0, stats
    assert "limit_channels" not in stats["counters"]
    async with AsyncClient(srv.url, api_key="k") as api:
        for i in range(20):  # the whole table is still the app's
            assert (await api.publish(f"app:{i}", i))["offset"] == 1
    assert (await _stats(srv))["channels"] == 20


async def test_a_subscriber_that_came_before_the_first_publication_recovers_it(
    server: RunningServer,
) -> None:
    channel = f"chat:{secrets.token_hex(6)}"
    early = await NativeClient.open(server.ws_url)
    first = (await early.call("subscribe", channel=channel))["result"]
    await early.close()
    async with AsyncClient(server.url) as api:
        pub = await api.publish(channel, "while you were away")
    assert pub["epoch"] == first["epoch"]
    late = await NativeClient.open(server.ws_url)
    since = {"offset": first["offset"], "epoch": first["epoch"]}
    again = (await late.call("subscribe", channel=channel, since=since))["result"]
    assert again["recovered"] is True
    assert [p["data"] for p in again["publications"]] == ["while you were away"]
    await late.close()


BIG = "x" * 60_000


async def test_history_is_bounded_over_the_node_and_recovery_tells_the_truth(
    start_server: Callable[..., RunningServer],
) -> None:
    budget = 8 * 1024 * 1024
    # The memory engine: history.max_bytes bounds history itself. (With SQLite it bounds
    # only what memory holds of it: tests/e2e/test_durable_memory.py.)
    srv = start_server(
        f"[history]\nmax_bytes = {budget}\n"
        '[[channel]]\nmatch = "flood:*"\nclient_publish = true\n'
        "history_size = 1000\nhistory_ttl = 600\n",
        args=("--engine", "memory"),
    )
    watcher = await NativeClient.open(srv.ws_url)
    start = (await watcher.call("subscribe", channel="flood:0"))["result"]
    await watcher.close()
    before = srv.rss_bytes()

    async def flood(n: int) -> int:
        client = await NativeClient.open(srv.ws_url)
        published = 0
        for _ in range(40):  # within the default burst of 40 per connection
            reply = await client.call("publish", channel=f"flood:{n % 5}", data=BIG)
            published += "result" in reply
        await client.close()
        return published

    published = sum(await asyncio.gather(*(flood(n) for n in range(30))))
    assert published == 30 * 40  # 72 MB offered, every publication acknowledged
    stats = await _stats(srv)
    assert 0 < stats["history_bytes"] <= budget
    assert stats["history_bytes"] > budget - 2 * (len(BIG) + 200)  # the budget is used, not less
    grown = srv.rss_bytes() - before
    assert grown < 45 * 1024 * 1024, f"RSS grew {grown / 2**20:.0f} MiB"

    late = await NativeClient.open(srv.ws_url)
    since = {"offset": start["offset"], "epoch": start["epoch"]}
    gap = (await late.call("subscribe", channel="flood:0", since=since))["result"]
    assert gap["recovered"] is False  # the oldest went to make room: the client is told
    assert gap["publications"] == []
    async with AsyncClient(srv.url) as api:
        page = await api.history("flood:0")
    assert 0 < len(page["publications"]) < 240
    assert page["publications"][-1]["offset"] == page["offset"]  # the newest are kept
    await late.close()
