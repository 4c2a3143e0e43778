"""A node killed with SIGKILL mid-stream: its clients come back on another node and lose nothing.

Three ``orbiter serve`` nodes on a real ``redis-server``; a publisher sends
to node C while subscribers on nodes A and B read. Node A is killed
(SIGKILL) halfway; its subscribers reconnect to node B with their position
(``since``). In the end every subscriber has every acknowledged publication
exactly once, in offset order.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from orbiter import AsyncClient
from tests.support.redis_server import RedisServer
from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient

COUNT = 150


class _Reader:
    """A subscriber of ``feed`` that comes back on ``fallback`` with its position if its node
    goes away."""

    def __init__(self, url: str, fallback: str) -> None:
        self.url, self.fallback = url, fallback
        self.got: list[tuple[int, Any]] = []
        self.epoch = ""
        self.reconnected = False
        self.recovered: bool | None = None
        self.subscribed = asyncio.Event()
        #: Set once it has :data:`COUNT` publications.
        self.complete = asyncio.Event()

    async def run(self, done: asyncio.Event) -> None:
        client = await NativeClient.open(self.url)
        result = (await client.call("subscribe", channel="feed"))["result"]
        self.epoch = result["epoch"]
        self.subscribed.set()
        while not done.is_set():
            if client.closed.is_set() and client.pushes.empty():
                await client.close()
                client = await NativeClient.open(self.fallback)
                since = {"offset": self.got[-1][0] if self.got else 0, "epoch": self.epoch}
                reply = await client.call("subscribe", channel="feed", since=since)
                self.reconnected = True
                self.recovered = reply["result"]["recovered"]
                self.got += [(p["offset"], p["data"]) for p in reply["result"]["publications"]]
                if len(self.got) >= COUNT:
                    self.complete.set()
                continue
            try:
                push = await client.next_push(0.1)
            except TimeoutError:
                continue
            self.got.append((push["offset"], push["data"]))
            if len(self.got) >= COUNT:
                self.complete.set()
        await client.close()


async def test_a_killed_nodes_subscribers_recover_every_acknowledged_publication_once() -> None:
    redis = RedisServer()
    a, b, c = (RunningServer(args=("--engine", redis.url)) for _ in range(3))
    try:
        readers = [_Reader(node.ws_url, b.ws_url) for node in (a, a, a, b, b)]
        done = asyncio.Event()
        tasks = [asyncio.create_task(reader.run(done)) for reader in readers]
        for reader in readers:
            await asyncio.wait_for(reader.subscribed.wait(), 10)
        acknowledged: list[tuple[int, Any]] = []
        async with AsyncClient(c.url) as api:
            for i in range(COUNT):
                answer = await api.publish("feed", i)
                acknowledged.append((answer["offset"], i))
                if i == COUNT // 2:
                    a.stop(signal.SIGKILL)  # mid-stream, without a word to its clients
                await asyncio.sleep(0.005)
        await asyncio.wait_for(asyncio.gather(*(r.complete.wait() for r in readers)), 20)
        await asyncio.sleep(0.3)  # anything twice would have come by now
        done.set()
        await asyncio.gather(*tasks)
        for reader in readers:
            assert reader.got == acknowledged  # every one, once, in offset order
        assert [r.reconnected for r in readers] == [True, True, True, False, False]
        assert all(r.recovered is True for r in readers[:3])
    finally:
        for node in (a, b, c):
            node.stop()
        redis.close()
