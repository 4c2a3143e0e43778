"""Writes a client session's outbox to a long-lived HTTP response.

The Orbited ``iframe`` and ``sse`` URLs differ only in how they frame a
batch of the session's messages; this is the loop they share, taking them
from the outbox through a :class:`~orbiter.services.outbox.Pull` sink (plain
SSE is written to at once instead: :class:`orbiter.transports.sse.EventStream`). A
:class:`Framer` frames each batch right after it is taken from the outbox,
so it may read the session's positions, which then match exactly what the
batch holds. After ``session.ping_interval`` seconds
without a write, a keepalive goes out: proxies keep the stream open, and a
client that has gone is noticed by the failed write. A write that cannot
finish within ``ping_interval + pong_timeout`` (a client that stopped
reading) aborts the connection.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from aiohttp import web

from orbiter.config.settings import SessionTiming
from orbiter.services.outbox import Pull
from orbiter.session.session import ClientSession


class Framer(Protocol):
    def frame(self, batch: list[bytes]) -> bytes:
        """The bytes for one batch of session messages (may be empty)."""
        ...

    def written(self) -> None:
        """The bytes of the last :meth:`frame` have been written."""
        ...


async def pump(
    request: web.Request,
    response: web.StreamResponse,
    session: ClientSession,
    framer: Framer,
    *,
    keepalive: bytes,
    timing: SessionTiming,
    limit: int | None = None,
) -> bool:
    """Stream the session until it closes (True) or ``limit`` bytes are written (False).

    Raises ConnectionError once the client is gone.
    """
    sent = 0
    output = Pull(session.outbox)
    while True:
        try:
            async with asyncio.timeout(timing.ping_interval):
                batch = await output.take()
        except TimeoutError:
            await write(request, response, keepalive, timing)
            continue
        if not batch:
            return True
        data = framer.frame(batch)
        if not data:
            continue
        await write(request, response, data, timing)
        framer.written()
        sent += len(data)
        if limit is not None and sent >= limit:
            return False


async def write(
    request: web.Request, response: web.StreamResponse, data: bytes, timing: SessionTiming
) -> None:
    """Write ``data``; abort the connection if the client does not take it in time."""
    try:
        async with asyncio.timeout(timing.ping_interval + timing.pong_timeout):
            await response.write(data)
    except TimeoutError:
        transport = request.transport
        if transport is not None:
            transport.abort()
        raise ConnectionResetError("the client stopped reading") from None
