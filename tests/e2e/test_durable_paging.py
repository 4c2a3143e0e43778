"""``GET /api/history?before=N&limit=M``: paging backwards through a channel's history,
past what memory holds (read from the SQLite file), across a restart too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from orbiter import AsyncClient
from tests.support.server import RunningServer

CONFIG = """
[engine]
memory_window = 4

[channel_defaults]
history_size = 40
"""


async def _pages(url: str, channel: str, limit: int) -> list[list[int]]:
    """Every page from the newest back, ``limit`` at a time, until one is empty."""
    pages: list[list[int]] = []
    before = None
    async with AsyncClient(url) as api:
        while len(pages) < 100:
            page = await api.history(channel, limit=limit, before=before or 10**9)
            offsets = [p["offset"] for p in page["publications"]]
            if not offsets:
                return pages
            assert [p["data"] for p in page["publications"]] == [f"m{o}" for o in offsets]
            pages.append(offsets)
            before = offsets[0]
    raise AssertionError("paging did not end")


async def _status(url: str, query: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/api/history?{query}") as response,
    ):
        return response.status, await response.json()


async def test_paging_backwards_reads_the_file_past_the_memory_window(tmp_path: Path) -> None:
    args = ("--data-dir", str(tmp_path))
    server = RunningServer(CONFIG, args=args)
    try:
        async with AsyncClient(server.url) as api:
            for n in range(1, 51):
                await api.publish("paged", f"m{n}")
        expected = [
            list(range(41, 51)),
            list(range(31, 41)),
            list(range(21, 31)),
            list(range(11, 21)),
        ]
        assert await _pages(server.url, "paged", 10) == expected  # 1..10 are past history_size
        status, body = await _status(server.url, "channel=paged&since=3&epoch=e&before=9")
        assert status == 400
        assert "'since' and 'before'" in body["error"]["message"]
        status, body = await _status(server.url, "channel=paged&before=-1")
        assert status == 400
    finally:
        server.stop()
    again = RunningServer(CONFIG, args=args)  # memory holds nothing yet: all from the file
    try:
        assert await _pages(again.url, "paged", 7) == [
            list(range(44, 51)),
            list(range(37, 44)),
            list(range(30, 37)),
            list(range(23, 30)),
            list(range(16, 23)),
            list(range(11, 16)),
        ]
    finally:
        again.stop()
