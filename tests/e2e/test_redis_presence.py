"""On Redis, presence costs a round trip only on channels whose rule has presence on.

Every command the node sends to a real ``redis-server`` is watched with
``MONITOR``: subscribing clients to a channel with presence off (and
unsubscribing them) sends nothing about presence, while a channel with
presence on (the embedded default's ``chat:*``) does, which shows the watch
sees presence commands when there are any.
"""

from __future__ import annotations

import asyncio

from tests.support.redis_server import RedisServer
from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient


class _Monitor:
    """A ``MONITOR`` connection to Redis, its lines collected as they come."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def start(self, port: int) -> None:
        reader, self._writer = await asyncio.open_connection("127.0.0.1", port)
        self._writer.write(b"MONITOR\r\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"+OK\r\n"
        self._task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            self.lines.append(line)

    def mentioning(self, text: bytes) -> list[bytes]:
        return [line for line in self.lines if text in line]

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._task is not None:
            self._task.cancel()


async def test_no_presence_command_for_a_channel_with_presence_off() -> None:
    redis = RedisServer()
    server = RunningServer(args=("--engine", redis.url))
    monitor = _Monitor()
    clients: list[NativeClient] = []
    try:
        await monitor.start(redis.port)
        for i in range(5):
            client = await NativeClient.open(server.ws_url, user=f"u{i}", location="/p")
            clients.append(client)
            await client.call("subscribe", channel="news")  # presence off (the default)
        for client in clients[:3]:
            await client.call("unsubscribe", channel="news")
        await clients[3].close()  # a connection that goes
        # A channel with presence on: its commands show up in the watch.
        await clients[4].call("subscribe", channel="chat:lobby")
        for _ in range(250):
            if monitor.mentioning(b"presence:clients:chat:lobby"):
                break
            await asyncio.sleep(0.02)
        assert monitor.mentioning(b"presence:clients:chat:lobby")
        assert monitor.mentioning(b"orbiter:ch:news")  # the node's one SUBSCRIBE is seen too
        assert monitor.mentioning(b"presence:clients:news") == []
        assert [line for line in monitor.lines if b"presence" in line and b"news" in line] == []
    finally:
        for client in clients:
            await client.close()
        await monitor.close()
        server.stop()
        redis.close()
