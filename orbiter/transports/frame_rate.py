"""``limits.frame_rate`` for the WebSocket routes served by aiohttp: ``/stomp``, ``/tcp``,
SockJS's ``/websocket`` URLs (``/sockjs``, ``/stomp/sockjs``, ``/tcp/sockjs``).

The native route counts frames in its sans-I/O core and pauses its
transport (``transports/websocket.py``); these routes read through
aiohttp's :class:`~aiohttp.web.WebSocketResponse`, so :class:`RatedFrames`
counts there instead: every frame taken from it (a message, a ping, a pong)
is one of the second's ``limit``; past it, that frame waits for the next
second of the monotonic clock, and no other frame is taken meanwhile. Not
asking aiohttp for the next frame is enough to stop reading: its frame queue
is bounded (a few hundred KiB), past it aiohttp pauses the transport and TCP
pushes back on the client. Nothing is dropped, and a flood costs the server
``limit`` frames a second.

Pings are answered here, one pong each (the response must be made with
``autoping=False``: aiohttp's own answering would take pings without
counting them). A pong waits for the transport's buffer like any write, so
a client that does not read its pongs stops being read too.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from aiohttp import WSMessage, WSMsgType, web
from aiohttp.http import WS_CLOSED_MESSAGE

#: What ends a WebSocket's messages (as ``async for msg in ws`` ends on them).
_ENDINGS = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED})


class RatedFrames:
    """Takes a WebSocket's frames at most ``limit`` a second (see the module docstring).

    ``await frames.receive()`` is ``ws.receive()`` with pings answered and
    pongs passed over; ``async for msg in frames`` ends as ``async for msg
    in ws`` does. Each wait past the limit counts ``limit_frame_rate`` in
    ``counters``.
    """

    __slots__ = ("_counters", "_limit", "_second", "_taken", "_ws")

    def __init__(self, ws: web.WebSocketResponse, limit: int, counters: Counter[str]) -> None:
        self._ws = ws
        self._limit = limit
        self._counters = counters
        #: The frames taken in the second ``_second`` (whole seconds of ``time.monotonic``).
        self._second = -1
        self._taken = 0

    async def receive(self) -> WSMessage:
        """The next message (text, binary, or how the WebSocket ended)."""
        ws = self._ws
        while True:
            msg = await ws.receive()
            await self._count_one()
            if msg.type is WSMsgType.PING:
                try:
                    await ws.pong(msg.data)
                except ConnectionError:  # the client left: as aiohttp's receive says it
                    return WS_CLOSED_MESSAGE
            elif msg.type is not WSMsgType.PONG:
                return msg

    async def _count_one(self) -> None:
        """Count a frame just taken in this second; if the second is full, wait for the next
        (taking no other frame meanwhile) and count it there."""
        now = time.monotonic()
        second = int(now)
        if second > self._second:
            self._second, self._taken = second, 0
        elif self._taken >= self._limit:
            self._counters["limit_frame_rate"] += 1
            second += 1
            while now < second:  # (a timer may fire a little early)
                await asyncio.sleep(second - now)
                now = time.monotonic()
            self._second, self._taken = int(now), 0
        self._taken += 1

    def __aiter__(self) -> RatedFrames:
        return self

    async def __anext__(self) -> WSMessage:
        msg = await self.receive()
        if msg.type in _ENDINGS:
            raise StopAsyncIteration
        return msg
