"""``/poll`` needs no sticky sessions: a poller asking two nodes in turn misses nothing.

A long poll carries its position (``since`` and ``epoch``), and on Redis the
positions are the cluster's, so each poll may go to another node: held on
one node, it is woken by a publication made on the other. Against a real
``redis-server`` and two ``orbiter serve`` processes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from orbiter import AsyncClient
from tests.support.redis_server import RedisServer
from tests.support.server import RunningServer


async def _poll(http: aiohttp.ClientSession, url: str, **query: Any) -> dict[str, Any]:
    async with http.get(f"{url}/poll", params={"channel": "feed", **query}) as answer:
        assert answer.status == 200, await answer.text()
        result: dict[str, Any] = await answer.json()
        return result


async def test_polls_alternating_between_nodes_get_every_publication_once_in_order() -> None:
    redis = RedisServer()
    nodes = [RunningServer(args=("--engine", redis.url)) for _ in range(2)]
    try:
        urls = [node.url for node in nodes]
        async with aiohttp.ClientSession() as http:
            start = await _poll(http, urls[0])  # where to start: no since, at once
            position = {"since": start["offset"], "epoch": start["epoch"]}

            async def publish() -> None:
                async with AsyncClient(urls[0]) as a, AsyncClient(urls[1]) as b:
                    for i in range(30):
                        await (a, b)[i % 2].publish("feed", f"m{i}")
                        await asyncio.sleep(0.01 if i % 3 else 0.15)  # some polls are held

            publisher = asyncio.create_task(publish())
            got: list[str] = []
            asked = 0
            async with asyncio.timeout(30):
                while len(got) < 30:
                    answer = await _poll(http, urls[asked % 2], **position)
                    asked += 1
                    assert answer["recoverable"] is True
                    got += [p["data"] for p in answer["publications"]]
                    position = {"since": answer["offset"], "epoch": answer["epoch"]}
            await publisher
        assert got == [f"m{i}" for i in range(30)]
        assert asked >= 4  # both nodes were asked, more than once each
    finally:
        for node in nodes:
            node.stop()
        redis.close()
