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

Between two requests of a kept-alive connection the handler may give the
connection back to the sniffer (its :attr:`NoticingRequestHandler.reclaim`):
a proxy that reuses its upstream connections sends a WebSocket handshake
after ordinary requests, and only the sniffer's routers take one. It asks
only at a request boundary: nothing being read, served or written, nothing
queued, and the last bytes it read ended a request head (so a head split
across reads is never cut). :meth:`NoticingRequestHandler.detach` then ends
the handler without closing the connection or telling its listener.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web
from aiohttp.web_protocol import RequestHandler


class Listener(Protocol):
    def client_left(self) -> None:
        """The client's connection is gone (called once, from the event loop)."""


class NoticingRequestHandler(RequestHandler):
    """aiohttp's request handler, telling its :class:`Listener` when its connection is lost."""

    __slots__ = ("_mid_head", "listener", "reclaim")

    def __init__(self, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.listener: Listener | None = None
        #: Offered the first read of each next request (the sniffer's): True if it took
        #: the connection (then this handler is detached); None: never asked.
        self.reclaim: Callable[[NoticingRequestHandler, bytes], bool] | None = None
        #: The last read between requests began a head without ending it.
        self._mid_head = False

    @classmethod
    def made_by(cls, server: web.Server) -> NoticingRequestHandler:
        """The handler ``server()`` would make (with the server's arguments), of this class."""
        return cls(server, loop=server._loop, **server._kwargs)

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter  # set only while waiting for the next request
        reclaim = self.reclaim
        if waiter is None or reclaim is None:  # the first request, or one being read or served
            super().data_received(data)
            return
        if (
            not self._mid_head
            and not waiter.done()
            and not self._messages
            and self._payload_parser is None
            and not self._upgraded
            and reclaim(self, data)
        ):
            return
        count = self._request_count
        super().data_received(data)
        self._mid_head = self._request_count == count

    def detach(self) -> None:
        """Stop serving the connection without closing it: the sniffer takes it back.

        Only between requests. The handler's task and keep-alive timer end, aiohttp's
        server forgets it; the listener (none between requests) is not told anything.
        """
        self.listener = None
        self.transport = None  # so that aiohttp's force_close leaves the socket open
        RequestHandler.connection_lost(self, None)

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
