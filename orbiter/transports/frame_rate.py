"""``limits.frame_rate`` for the WebSocket routes served by aiohttp: ``/stomp``, ``/tcp``,
SockJS's ``/websocket`` URLs (``/sockjs``, ``/stomp/sockjs``, ``/tcp/sockjs``).

The native route counts frames in its sans-I/O core and pauses its
transport (``transports/websocket.py``); these routes read through
aiohttp's :class:`~aiohttp.web.WebSocketResponse`, so :class:`RatedFrames`
counts there instead (the count itself is :class:`FrameBudget`, without
I/O): every frame taken from it (a message, a ping, a pong) is one of the
second's ``limit``; past it, that frame waits for the next second of the
monotonic clock, and no other frame is taken meanwhile. Not
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

from aiohttp import WSMessage, WSMsgType, web
from aiohttp.http import WS_CLOSED_MESSAGE

from orbiter.logs import Counters

#: What ends a WebSocket's messages (as ``async for msg in ws`` ends on them).
_ENDINGS = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED})


class FrameBudget:
    """The count, without I/O: ``limit`` frames in each second of a clock.

    :meth:`take` counts a frame at time ``now`` and says when it may be
    handled: at once (None), or at the start of the next second, in whose
    budget it is then counted.
    """

    __slots__ = ("_limit", "_second", "_taken")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        #: The frames counted in the second ``_second`` (whole seconds of the clock).
        self._second = -1
        self._taken = 0

    def take(self, now: float) -> float | None:
        """Count a frame that came at ``now``: None, or when it may be handled."""
        second = int(now)
        if second > self._second:
            self._second, self._taken = second, 1
            return None
        if self._taken < self._limit:
            self._taken += 1
            return None
        self._second, self._taken = self._second + 1, 1
        return float(self._second)


class RatedFrames:
    """Takes a WebSocket's frames at most ``limit`` a second (see the module docstring).

    ``await frames.receive()`` is ``ws.receive()`` with pings answered and
    pongs passed over; ``async for msg in frames`` ends as ``async for msg
    in ws`` does. Each wait past the limit counts ``limit_frame_rate`` in
    ``counters``, with its (rate-limited) ``event=limit`` line naming ``client``
    (``-``: not known) and ``peer``.
    """

    __slots__ = ("_budget", "_client", "_counters", "_peer", "_ws")

    def __init__(
        self,
        ws: web.WebSocketResponse,
        limit: int,
        counters: Counters,
        peer: str,
        client: str = "-",
    ) -> None:
        self._ws = ws
        self._budget = FrameBudget(limit)
        self._counters = counters
        self._peer = peer
        self._client = client

    async def receive(self) -> WSMessage:
        """The next message (text, binary, or how the WebSocket ended)."""
        ws = self._ws
        while True:
            msg = await ws.receive()
            due = self._budget.take(time.monotonic())
            if due is not None:  # over the limit: take nothing more until the next second
                self._counters.limit("limit_frame_rate", self._client, self._peer)
                # A timer may fire a little early (uvloop counts whole milliseconds from the
                # loop's cached time): sleep again until the second has really begun.
                while (now := time.monotonic()) < due:  # noqa: ASYNC110 (no event to wait on)
                    await asyncio.sleep(due - now)
            if msg.type is WSMsgType.PING:
                try:
                    await ws.pong(msg.data)
                except ConnectionError:  # the client left: as aiohttp's receive says it
                    return WS_CLOSED_MESSAGE
            elif msg.type is not WSMsgType.PONG:
                return msg

    def __aiter__(self) -> RatedFrames:
        return self

    async def __anext__(self) -> WSMessage:
        msg = await self.receive()
        if msg.type in _ENDINGS:
            raise StopAsyncIteration
        return msg
