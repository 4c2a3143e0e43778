"""A minimal Server-Sent Events reader over aiohttp's client, for tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson


@dataclass
class Event:
    name: str
    data: str
    id: str | None

    def json(self) -> Any:
        return orjson.loads(self.data)


class EventStream:
    """Reads one SSE response event by event, as ``EventSource`` would."""

    def __init__(self, http: aiohttp.ClientSession, response: aiohttp.ClientResponse) -> None:
        self.http = http
        self.response = response
        self.comments = 0
        self.last_id: str | None = None

    @classmethod
    async def open(cls, url: str, last_event_id: str | None = None) -> EventStream:
        http = aiohttp.ClientSession()
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        response = await http.get(url, headers=headers)
        return cls(http, response)

    async def next(self, timeout: float = 5.0) -> Event:
        """The next event; EOFError when the stream ends."""
        async with asyncio.timeout(timeout):
            name, id_ = "message", None
            data: list[str] = []
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    raise EOFError("the stream ended")
                line = raw.decode().rstrip("\n")
                if not line:
                    if data:
                        if id_ is not None:
                            self.last_id = id_
                        return Event(name, "\n".join(data), id_)
                    name, id_ = "message", None
                    continue
                if line.startswith(":"):
                    self.comments += 1
                    continue
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "event":
                    name = value
                elif field == "data":
                    data.append(value)
                elif field == "id":
                    id_ = value

    async def messages(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The pushes of ``message`` events until ``count`` have come."""
        pushes: list[dict[str, Any]] = []
        while len(pushes) < count:
            event = await self.next(timeout)
            assert event.name == "message", event
            pushes.extend(event.json())
        return pushes

    async def close(self) -> None:
        self.response.close()
        await self.http.close()
