"""A minimal native-protocol client over aiohttp's WebSocket client, for tests."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import aiohttp
import orjson


class NativeClient:
    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse):
        self._session = session
        self.ws = ws
        self._ids = itertools.count(1)
        self.replies: dict[int, dict[str, Any]] = {}
        self.pushes: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.errors_without_id: list[dict[str, Any]] = []
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.connect_result: dict[str, Any] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, ws_url: str, **connect: Any) -> NativeClient:
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(ws_url, max_msg_size=0)
        client = cls(session, ws)
        reply = await client.call("connect", **connect)
        assert "result" in reply, reply
        client.connect_result = reply["result"]
        return client

    async def _read(self) -> None:
        while True:
            msg = await self.ws.receive()
            if msg.type is aiohttp.WSMsgType.CLOSE:
                self.close_reason = msg.extra or ""
            if msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                break
            if msg.type is aiohttp.WSMsgType.TEXT:
                for line in msg.data.split("\n"):
                    obj = orjson.loads(line)
                    if "push" in obj:
                        self.pushes.put_nowait(obj)
                    elif obj.get("id") is None:
                        self.errors_without_id.append(obj)
                    else:
                        self.replies[obj["id"]] = obj
        self.closed.set()

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        id_ = next(self._ids)
        await self.ws.send_bytes(orjson.dumps({"id": id_, "op": op, **fields}))
        return await self.reply(id_)

    async def reply(self, id_: int, timeout: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while id_ not in self.replies:
                if self.closed.is_set():
                    raise ConnectionError(f"closed before reply {id_}")
                await asyncio.sleep(0.005)
        return self.replies.pop(id_)

    async def next_push(self, timeout: float = 5.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.pushes.get(), timeout)

    async def pushes_now(self, settle: float = 0.2) -> list[dict[str, Any]]:
        await asyncio.sleep(settle)
        items = []
        while not self.pushes.empty():
            items.append(self.pushes.get_nowait())
        return items

    async def close(self) -> None:
        await self.ws.close()
        await self._reader
        await self._session.close()
