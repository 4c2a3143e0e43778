"""On the SQLite engine, ``history.max_bytes`` bounds what memory holds of history, not
history: a flood far past it keeps the process small, and every publication stays
readable (older pages from the file) and recoverable."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp

from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient

BIG = "x" * 60_000
BUDGET = 8 * 1024 * 1024


async def test_a_flood_past_the_memory_budget_stays_in_history(
    start_server: Callable[..., RunningServer],
) -> None:
    srv = start_server(
        f"[history]\nmax_bytes = {BUDGET}\n"
        '[[channel]]\nmatch = "flood:*"\nclient_publish = true\n'
        "history_size = 1000\nhistory_ttl = 600\n"
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
    async with aiohttp.ClientSession() as http:
        async with http.get(srv.url + "/api/stats") as response:
            stats = await response.json()
        assert 0 < stats["history_bytes"] <= BUDGET  # what memory holds
        grown = srv.rss_bytes() - before
        assert grown < 45 * 1024 * 1024, f"RSS grew {grown / 2**20:.0f} MiB"
        query = {"channel": "flood:0", "since": "0", "epoch": start["epoch"]}
        async with http.get(srv.url + "/api/history", params=query) as response:
            page = await response.json()
    assert page["recoverable"] is True  # nothing went to make room: it is in the file
    assert [p["offset"] for p in page["publications"]] == list(range(1, 241))
    assert all(p["data"] == BIG for p in page["publications"])
    late = await NativeClient.open(srv.ws_url)
    since = {"offset": page["offset"] - 3, "epoch": start["epoch"]}
    recent = (await late.call("subscribe", channel="flood:0", since=since))["result"]
    assert recent["recovered"] is True
    assert [p["offset"] for p in recent["publications"]] == [238, 239, 240]
    await late.close()
