"""Notice at once that the client of an aiohttp request has left, not at the next write.

aiohttp tells a running handler nothing when its client's connection closes
(short of cancelling every handler on every route, publishes included), so a
long-lived response learnt it only when a write failed: a plain SSE stream
or an Orbited stream up to ``session.ping_interval`` later, its session
counting against ``limits.max_connections_per_ip`` and its subscriptions
held until then.

The connection sniffer (``transports/sniffing.py``) gives every connection
it hands to aiohttp a :class:`NoticingRequestHandler`: aiohttp's request
handler, which also tells one :class:`Listener` when the connection is lost
(the transport's ``connection_lost``). A long response registers itself with
:func:`listen` for as long as it runs; an idle connection holds nothing more
than one empty slot. A request served without the sniffer (an app run by
aiohttp's own runner) cannot be listened to, and learns of the departure at
its next write, as before.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from aiohttp import web
from aiohttp.web_protocol import RequestHandler


class Listener(Protocol):
    def client_left(self) -> None:
        """The client's connection is gone (called once, from the event loop)."""


class NoticingRequestHandler(RequestHandler):
    """aiohttp's request handler, telling its :class:`Listener` when its connection is lost."""

    __slots__ = ("listener",)

    def __init__(self, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.listener: Listener | None = None

    @classmethod
    def made_by(cls, server: web.Server) -> NoticingRequestHandler:
        """The handler ``server()`` would make (with the server's arguments), of this class."""
        return cls(server, loop=server._loop, **server._kwargs)

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.client_left()


def listen(request: web.Request, listener: Listener | None) -> bool:
    """Have ``listener`` told the moment ``request``'s client leaves (at once, if it has);
    None stops telling. False if this connection cannot tell (then nothing is called).

    One listener a connection: the response being written on it.
    """
    protocol = request.protocol
    if not isinstance(protocol, NoticingRequestHandler):
        return False
    if listener is not None and protocol.transport is None:
        listener.client_left()
        return True
    protocol.listener = listener
    return True


class Departure:
    """A :class:`Listener` that resolves a future, for a handler that waits on it."""

    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def client_left(self) -> None:
        if not self.future.done():
            self.future.set_result(None)
