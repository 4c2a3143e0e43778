"""Reads each connection's first request head before aiohttp does, to take the
requests aiohttp refuses to parse: hixie-76 WebSocket handshakes.

:class:`SniffingRunner` is an :class:`aiohttp.web.AppRunner` whose protocol
factory puts a :class:`_HeadSniffer` in front of aiohttp's request handler.
The sniffer buffers only until the first request head is complete (at most
:data:`~orbiter.protocol.hixie76.MAX_HEAD` bytes), then, unless a
:data:`RawRouter` claims the head, swaps aiohttp's handler in with
``transport.set_protocol`` and hands it every byte: later requests and
WebSocket frames never pass through it. A claimed connection moves to
asyncio streams and the router's handler.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web

from orbiter.protocol.hixie76 import MAX_HEAD, head_length, is_hixie76

log = logging.getLogger("orbiter.http")

#: Serves a connection taken from aiohttp, from just after its request head.
RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
#: Given a hixie-76 request head and the peer's address, the handler that takes the
#: connection, or None to leave it to aiohttp (which refuses it with a 400).
RawRouter = Callable[[bytes, str], RawHandler | None]


def first_claim(routers: list[RawRouter]) -> RawRouter:
    """A router that asks each of ``routers`` (as the list is when asked) in turn."""

    def route(head: bytes, peer: str) -> RawHandler | None:
        for router in routers:
            handler = router(head, peer)
            if handler is not None:
                return handler
        return None

    return route


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
        buffer = self._buffer + data if self._buffer else data
        end = head_length(buffer)
        if end is None and len(buffer) < MAX_HEAD:
            self._buffer = buffer
            return
        self._buffer = b""
        handler = None
        if end is not None and is_hixie76(buffer[:end]):
            handler = self._factory.route(buffer[:end], self._peer())
        if handler is None:
            self._hand_to_aiohttp(buffer)
        else:
            self._take(handler, buffer[end:])

    def eof_received(self) -> bool | None:
        # A head cut short: let aiohttp answer what it has, as it would have.
        inner = self._hand_to_aiohttp(self._buffer)
        return inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def _peer(self) -> str:
        assert self._transport is not None
        address = self._transport.get_extra_info("peername")
        return str(address[0]) if isinstance(address, tuple) else "?"

    def _hand_to_aiohttp(self, data: bytes) -> asyncio.Protocol:
        assert self._transport is not None
        inner = self._factory.aiohttp_protocol()
        self._transport.set_protocol(inner)
        inner.connection_made(self._transport)
        if data:
            inner.data_received(data)
        return inner

    def _take(self, handler: RawHandler, rest: bytes) -> None:
        transport = self._transport
        assert transport is not None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_HEAD, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if rest:
            reader.feed_data(rest)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        self._factory.run(handler(reader, writer), writer)


class _SniffingServer:
    """aiohttp's :class:`web.Server` with a sniffer in front of each connection."""

    def __init__(self, inner: web.Server, router: RawRouter) -> None:
        self._inner = inner
        self.route = router
        self._taken: set[asyncio.Task[None]] = set()

    def __call__(self) -> _HeadSniffer:
        return _HeadSniffer(self)

    def aiohttp_protocol(self) -> asyncio.Protocol:
        return self._inner()

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
        await self._inner.shutdown(timeout)
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
