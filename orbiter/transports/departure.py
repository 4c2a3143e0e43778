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
connection back to the sniffer (its :attr:`NoticingRequestHandler.reclaimer`):
a proxy that reuses its upstream connections sends a WebSocket handshake
after ordinary requests, and only the sniffer's routers take one. It asks
only at a request boundary: every request read so far answered and its
handler returned, its body read to the end, nothing queued, and the last bytes
it read ended a request head (so a head split across reads is never cut). A
read that may begin such a handshake but comes while the last handler still
runs (a proxy sends its next request as soon as it has the whole answer) is
held until that handler returns. :meth:`NoticingRequestHandler.detach`
then ends the handler without closing the connection or telling its listener.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler


class Listener(Protocol):
    def client_left(self) -> None:
        """The client's connection is gone (called once, from the event loop)."""


class Reclaimer(Protocol):
    """Takes a kept-alive connection back from its handler (the sniffer)."""

    def may_take(self, data: bytes) -> bool:
        """Could ``data``, the first read of a request, begin one it would take?"""

    def take(self, handler: NoticingRequestHandler, data: bytes) -> bool:
        """Take the connection from ``handler``, between requests, at ``data``: True if taken."""


#: Held reads past this many bytes go to aiohttp.
_HELD_MOST = 64 * 1024


class NoticingRequestHandler(RequestHandler):
    """aiohttp's request handler, telling its :class:`Listener` when its connection is lost."""

    __slots__ = ("_held", "_last_payload", "_mid_head", "_unfinished", "listener", "reclaimer")

    def __init__(self, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.listener: Listener | None = None
        #: Offered the first read of each next request (the sniffer); None: never asked.
        self.reclaimer: Reclaimer | None = None
        #: The last read at a request boundary began a head without ending it.
        self._mid_head = False
        #: Requests whose handling began (aiohttp's task made) and has not returned.
        self._unfinished = 0
        #: The body of the last request whose handling began (None: no request yet).
        self._last_payload: StreamReader | None = None
        #: Reads held until the running handler returns (see the module's docstring).
        self._held = b""

    @classmethod
    def made_by(cls, server: web.Server) -> NoticingRequestHandler:
        """The handler ``server()`` would make (with the server's arguments), of this class."""
        return cls(server, loop=server._loop, **server._kwargs)

    def data_received(self, data: bytes) -> None:
        reclaimer = self.reclaimer
        if reclaimer is None:  # not the sniffer's: aiohttp's alone
            super().data_received(data)
            return
        if self._held:
            self._hold(data)
            return
        at_boundary = self._at_boundary()
        if at_boundary and not self._mid_head and reclaimer.may_take(data):
            if self._unfinished:
                self._hold(data)
                return
            if reclaimer.take(self, data):
                return
        count = self._request_count
        super().data_received(data)
        if self._request_count != count:
            self._mid_head = False
        elif at_boundary:
            self._mid_head = True  # a read at a boundary that ended no head began one

    def _at_boundary(self) -> bool:
        """Every request read so far has been taken by start() with its whole body, and
        nothing is queued: the next byte begins a request head, or continues one begun
        by the reads since (:attr:`_mid_head`)."""
        payload = self._last_payload
        return (
            payload is not None
            and payload.is_eof()
            and not self._messages
            and self._payload_parser is None
            and not self._upgraded
            and not self._force_close
            and not self._close
        )

    def _hold(self, data: bytes) -> None:
        """Keep ``data`` until the running handler returns (reading goes on, so that a
        client leaving is still noticed at once); past ``_HELD_MOST`` bytes, aiohttp
        reads it all as it would have (pipelined requests)."""
        self._held += data
        if len(self._held) > _HELD_MOST:
            held, self._held = self._held, b""
            self._mid_head = False
            super().data_received(held)

    def _release_held(self) -> None:
        """The running handler returned: decide on the held reads as on a new read."""
        held, self._held = self._held, b""
        transport = self.transport
        if held and transport is not None and not transport.is_closing():
            self.data_received(held)
        # (else the answer closed the connection: aiohttp ignores what followed it)

    def _handle_request(
        self,
        request: web.BaseRequest,
        start_time: float | None,
        request_handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
    ) -> Coroutine[Any, Any, tuple[web.StreamResponse, bool]]:
        """aiohttp's, counted in :attr:`_unfinished` from the moment start() makes it
        (before its task first runs) until it returns."""
        self._unfinished += 1
        self._last_payload = request.content
        return self._counted(super()._handle_request(request, start_time, request_handler))

    async def _counted(
        self, handling: Awaitable[tuple[web.StreamResponse, bool]]
    ) -> tuple[web.StreamResponse, bool]:
        try:
            return await handling
        finally:
            self._unfinished -= 1
            if self._held and not self._unfinished:
                # (on the next pass: start() is still inside its loop, not at its wait)
                self._loop.call_soon(self._release_held)

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
