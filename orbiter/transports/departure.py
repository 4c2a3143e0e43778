"""Notice at once that the client of an aiohttp request has left, not at the next write.

aiohttp tells a running handler nothing when its client's connection closes
(short of cancelling every handler on every route, publishes included), so a
long-lived response learnt it only when a write failed: a plain SSE stream
or an Orbited stream up to ``session.ping_interval`` later, its session
counting against ``limits.max_connections_per_ip`` and its subscriptions
held until then.

The connection sniffer (``transports/sniffing.py``) gives every connection
it hands to aiohttp a :class:`NoticingRequestHandler`: aiohttp's request
handler, which also resolves a future when the connection is lost (the
transport's ``connection_lost``). :func:`departure` gives a request's
handler that future, to wait on beside its own work; a request served
without the sniffer (an app run by aiohttp's own runner) has none, and
learns of the departure at its next write, as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler


class NoticingRequestHandler(RequestHandler):
    """aiohttp's request handler, with a future resolved when its connection is lost."""

    __slots__ = ("_departed",)

    def __init__(self, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._departed: asyncio.Future[None] | None = None

    @classmethod
    def made_by(cls, server: web.Server) -> NoticingRequestHandler:
        """The handler ``server()`` would make (with the server's arguments), of this class."""
        return cls(server, loop=server._loop, **server._kwargs)

    def departed(self) -> asyncio.Future[None]:
        """Resolved once the connection is lost (made on first use: most requests never ask)."""
        departed = self._departed
        if departed is None:
            departed = self._departed = asyncio.get_running_loop().create_future()
            if self.transport is None:
                departed.set_result(None)
        return departed

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        departed = self._departed
        if departed is not None and not departed.done():
            departed.set_result(None)


def departure(request: web.Request) -> asyncio.Future[None] | None:
    """Resolved once ``request``'s client has gone; None if its connection cannot tell."""
    protocol = request.protocol
    return protocol.departed() if isinstance(protocol, NoticingRequestHandler) else None
