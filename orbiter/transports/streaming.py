"""Writes a client session's outbox to a long-lived HTTP response.

The Orbited ``iframe`` and ``sse`` URLs differ only in how they frame a
batch of the session's messages; this is the loop they share, taking them
from the outbox through a :class:`~orbiter.services.outbox.Pull` sink (plain
SSE is written to at once instead: :class:`orbiter.transports.sse.EventStream`). A
:class:`Framer` frames each batch right after it is taken from the outbox,
so it may read the session's positions, which then match exactly what the
batch holds. After ``session.ping_interval`` seconds
without a write, a keepalive goes out: proxies keep the stream open. A
client that has gone is noticed at once (:mod:`~orbiter.transports.departure`;
else by the next failed write). A write that cannot finish within
``ping_interval + pong_timeout`` (a client that stopped reading) aborts the
connection.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from aiohttp import web

from orbiter.config.settings import SessionTiming
from orbiter.services.outbox import Pull
from orbiter.session.session import ClientSession
from orbiter.transports.departure import Departure, listen


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
    departure = Departure()
    departed = departure.future if listen(request, departure) else None
    try:
        while True:
            batch = await _next_batch(output, departed, timing.ping_interval)
            if batch is None:
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
    finally:
        listen(request, None)


async def _next_batch(
    output: Pull, departed: asyncio.Future[None] | None, timeout: float
) -> list[bytes] | None:
    """The next batch; None after ``timeout`` seconds without one. ConnectionResetError the
    moment the client leaves (when ``departed`` tells)."""
    if departed is None:
        try:
            async with asyncio.timeout(timeout):
                return await output.take()
        except TimeoutError:
            return None
    taking = asyncio.ensure_future(output.take())
    await asyncio.wait((taking, departed), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if taking.done():
        return taking.result()
    taking.cancel()
    if departed.done():
        raise ConnectionResetError("the client left")
    return None


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
