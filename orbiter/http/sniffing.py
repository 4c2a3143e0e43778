"""Reads each connection's first request head before aiohttp does, so that a
router may take the connection from aiohttp: hixie-76 WebSocket handshakes
(which aiohttp refuses) and the HTTP publish fast path.

:class:`SniffingRunner` is an :class:`aiohttp.web.AppRunner` whose protocol
factory puts a :class:`_HeadSniffer` in front of aiohttp's request handler.
The sniffer buffers only until the first request head is complete (at most
:data:`~orbiter.protocol.hixie76.MAX_HEAD` bytes), then asks the
:data:`RawRouter`. Unless it claims the head, the sniffer swaps aiohttp's
handler in with ``transport.set_protocol`` and hands it every byte: later
requests and WebSocket frames never pass through it.

A router claims a connection by returning a :data:`Claim`, which is given a
:class:`Takeover`: the transport and every byte received so far, from the
first byte of the request. The new owner either serves the connection with
an :class:`asyncio.Protocol` of its own (:meth:`Takeover.to_protocol`; it
may later give the connection back to aiohttp from the first byte of any
request, :meth:`Takeover.to_aiohttp`), or with asyncio streams
(:func:`stream_claim`, for handlers written as coroutines).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web

from orbiter.protocol.hixie76 import MAX_HEAD, head_length

log = logging.getLogger("orbiter.http")

#: Serves a connection taken from aiohttp on asyncio streams, from just after its request head.
RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
#: Takes a claimed connection (see :class:`Takeover`).
Claim = Callable[["Takeover"], None]
#: Given a connection's first request head and the peer's address, the claim that
#: takes the connection, or None to leave it to aiohttp.
RawRouter = Callable[[bytes, str], Claim | None]


class ClaimedProtocol(asyncio.Protocol, ABC):
    """A protocol serving a claimed connection.

    It must call :meth:`Takeover.release` once the connection is lost (handing
    it to aiohttp releases it too).
    """

    __slots__ = ()

    @abstractmethod
    def close_when_idle(self) -> None:
        """Server shutdown: finish the request in progress, if any, then close."""


class Takeover:
    """A connection a router claimed, at the first byte of its first request."""

    __slots__ = ("_server", "data", "head", "peer", "transport")

    def __init__(
        self, server: _SniffingServer, transport: asyncio.Transport, data: bytes, head: bytes
    ) -> None:
        self._server = server
        self.transport = transport
        #: Every byte received so far, from the first byte of the first request.
        self.data = data
        #: The first request head (the start of ``data``, through its blank line).
        self.head = head
        self.peer = _peer(transport)

    def to_protocol(self, protocol: ClaimedProtocol, data: bytes) -> None:
        """Serve the connection with ``protocol``, replaying ``data`` to it."""
        self._server.claim(protocol)
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        if data:
            protocol.data_received(data)

    def to_aiohttp(self, protocol: ClaimedProtocol | None, data: bytes) -> asyncio.Protocol:
        """Give the connection (back) to aiohttp, replaying ``data`` from a request's first byte.

        ``protocol``, the claimed protocol that served it until now (if any), is
        released. Reading is resumed: aiohttp does its own flow control.
        """
        if protocol is not None:
            self.release(protocol)
        return self._server.to_aiohttp(self.transport, data)

    def to_streams(self, handler: RawHandler, rest: bytes) -> None:
        """Serve the connection with ``handler`` on asyncio streams, ``rest`` already read."""
        transport = self.transport
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_HEAD, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if rest:
            reader.feed_data(rest)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        self._server.run(handler(reader, writer), writer)

    def release(self, protocol: ClaimedProtocol) -> None:
        """``protocol`` no longer serves the connection (it was lost or handed on)."""
        self._server.release(protocol)


def stream_claim(handler: RawHandler) -> Claim:
    """A claim that serves the connection with ``handler`` from just after the first head."""

    def take(takeover: Takeover) -> None:
        takeover.to_streams(handler, takeover.data[len(takeover.head) :])

    return take


def first_claim(routers: list[RawRouter]) -> RawRouter:
    """A router that asks each of ``routers`` (as the list is when asked) in turn."""

    def route(head: bytes, peer: str) -> Claim | None:
        for router in routers:
            claim = router(head, peer)
            if claim is not None:
                return claim
        return None

    return route


def _peer(transport: asyncio.BaseTransport) -> str:
    address = transport.get_extra_info("peername")
    return str(address[0]) if isinstance(address, tuple) else "?"


class _HeadSniffer(asyncio.Protocol):
    """Holds a new connection until its first request head is whole, then hands it on."""

    __slots__ = ("_buffer", "_factory", "_transport")

    def __init__(self, factory: _SniffingServer) -> None:
        self._factory = factory
        self._transport: asyncio.Transport | None = None
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        buffer = self._buffer + data if self._buffer else data
        end = head_length(buffer)
        if end is None and len(buffer) < MAX_HEAD:
            self._buffer = buffer
            return
        self._buffer = b""
        claim = None
        if end is not None:
            claim = self._factory.route(buffer[:end], _peer(transport))
        if claim is None:
            self._factory.to_aiohttp(transport, buffer)
        else:
            claim(Takeover(self._factory, transport, buffer, buffer[:end]))

    def eof_received(self) -> bool | None:
        # A head cut short: let aiohttp answer what it has, as it would have.
        assert self._transport is not None
        inner = self._factory.to_aiohttp(self._transport, self._buffer)
        return inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


class _SniffingServer:
    """aiohttp's :class:`web.Server` with a sniffer in front of each connection."""

    def __init__(self, inner: web.Server, router: RawRouter) -> None:
        self._inner = inner
        self.route = router
        self._taken: set[asyncio.Task[None]] = set()
        #: Connections served by a claimed protocol now.
        self._claimed: set[ClaimedProtocol] = set()
        self._none_claimed = asyncio.Event()
        self._none_claimed.set()

    def __call__(self) -> _HeadSniffer:
        return _HeadSniffer(self)

    def claim(self, protocol: ClaimedProtocol) -> None:
        self._claimed.add(protocol)
        self._none_claimed.clear()

    def release(self, protocol: ClaimedProtocol) -> None:
        self._claimed.discard(protocol)
        if not self._claimed:
            self._none_claimed.set()

    def to_aiohttp(self, transport: asyncio.Transport, data: bytes) -> asyncio.Protocol:
        inner = self._inner()
        transport.set_protocol(inner)
        inner.connection_made(transport)
        if not transport.is_reading() and not transport.is_closing():
            transport.resume_reading()
        if data:
            inner.data_received(data)
        return inner

    def run(self, work: Awaitable[None], writer: asyncio.StreamWriter) -> None:
        async def guarded() -> None:
            try:
                await work
            except Exception:
                log.exception("raw connection handler failed")
            finally:
                writer.close()

        task = asyncio.get_running_loop().create_task(guarded())
        self._taken.add(task)
        task.add_done_callback(self._taken.discard)

    async def shutdown(self, timeout: float | None = None) -> None:
        for protocol in list(self._claimed):
            protocol.close_when_idle()
        await self._inner.shutdown(timeout)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._none_claimed.wait(), timeout)
        if self._taken:
            _, pending = await asyncio.wait(set(self._taken), timeout=timeout)
            for task in pending:
                task.cancel()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class SniffingRunner(web.AppRunner):
    """An AppRunner whose connections ``router`` may take before aiohttp parses them."""

    def __init__(self, app: web.Application, router: RawRouter, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._router = router

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return cast(web.Server, _SniffingServer(server, self._router))
