"""Reads each connection's first request head before aiohttp does, so that a
router may take the connection from aiohttp: hixie-76 WebSocket handshakes
(which aiohttp refuses) and the HTTP publish fast path.

:class:`SniffingRunner` is an :class:`aiohttp.web.AppRunner` whose protocol
factory puts a :class:`_HeadSniffer` in front of aiohttp's request handler.
The sniffer buffers only until the first request head is complete (at most
:data:`~orbiter.protocol.hixie76.MAX_HEAD` bytes), then asks the
:data:`RawRouter`. Unless it claims the head, the sniffer swaps aiohttp's
handler in with ``transport.set_protocol`` and hands it every byte: later
requests and WebSocket frames never pass through it. (That handler is a
:class:`~orbiter.transports.departure.NoticingRequestHandler`, so that long
responses learn at once that their client left.) One exception: when a later
request on a kept-alive connection begins with one of :data:`RECLAIMED_HEADS`
(a native WebSocket handshake, which a proxy reusing its upstream connections
sends after ordinary requests) and aiohttp's handler is between requests,
the handler is detached and a new sniffer reads that head as a first one:
the same routers, limits, pending count and ``head_timeout``.

Until its head is whole a connection is *pending*: it counts against the
node's connection limits (:class:`ConnectionGate`; past them it is answered
503 and closed at once) and has ``limits.head_timeout`` seconds to finish the
head (then 408 and closed; the deadlines of all pending connections share one
:class:`~orbiter.transports.deadline_wheel.DeadlineWheel`, which cuts each
within a sixteenth of ``head_timeout`` after it, and never before). A
connection accepted when the process is near its file-descriptor limit is
refused too, so the last descriptors stay for the server's own use.

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
import os
import resource
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

from aiohttp import web

from orbiter.protocol.hixie76 import MAX_HEAD, head_length
from orbiter.transports.deadline_wheel import DeadlineWheel
from orbiter.transports.departure import NoticingRequestHandler

log = logging.getLogger("orbiter.http")

#: Serves a connection taken from aiohttp on asyncio streams, from just after its request head.
RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
#: Takes a claimed connection (see :class:`Takeover`).
Claim = Callable[["Takeover"], None]
#: Given a connection's first request head and the peer's address, the claim that
#: takes the connection, or None to leave it to aiohttp.
RawRouter = Callable[[bytes, str], Claim | None]

#: How a later request on a kept-alive connection must begin for the sniffer to read it
#: again (aiohttp serves the others): the native WebSocket handshake, which only its
#: router takes (transports/websocket.py's ``PATH``). (Hixie-76 handshakes and fast-path
#: publishes after another request stay with aiohttp: the first is refused there, as
#: it was, the second served by the aiohttp route.)
RECLAIMED_HEADS: tuple[bytes, ...] = (b"GET /connection/websocket",)
_RECLAIMED_LONGEST = max(len(head) for head in RECLAIMED_HEADS)


def begins_reclaimed_head(data: bytes) -> bool:
    """Could ``data``, the first read of a request, be the start of a :data:`RECLAIMED_HEADS` one?

    A read shorter than the heads is compared on its own length.
    """
    if data.startswith(RECLAIMED_HEADS):
        return True
    return len(data) < _RECLAIMED_LONGEST and any(head.startswith(data) for head in RECLAIMED_HEADS)


#: File descriptors kept for the server's own use (engine, hooks, backends, files): a
#: connection accepted into one of the last of them is refused. At most a quarter of
#: the limit.
DESCRIPTOR_RESERVE = 32


class ConnectionGate(Protocol):
    """Counts connections still sending their first request head (the node)."""

    def open_pending(self, peer: str) -> str | None:
        """Count one more from ``peer``: None, or why it is refused (past the limits)."""

    def close_pending(self, peer: str) -> None:
        """An :meth:`open_pending` connection sent its head or closed."""

    def refused(self, counter: str, message: str, *args: object) -> None:
        """Count a refusal and log it (rate-limited)."""


_RLIMIT_NOFILE = resource.RLIMIT_NOFILE
_RLIM_INFINITY = resource.RLIM_INFINITY


def _descriptor_limits() -> tuple[int, int]:
    """The soft ``RLIMIT_NOFILE`` now (it can change while running), and the reserve in it."""
    soft = resource.getrlimit(_RLIMIT_NOFILE)[0]
    if soft == _RLIM_INFINITY:
        return 1 << 62, 0
    return soft, (DESCRIPTOR_RESERVE if soft >= 4 * DESCRIPTOR_RESERVE else soft // 4)


def descriptor_ceiling() -> int:
    """The lowest descriptor number a new connection may not have.

    Descriptors are allocated lowest first, so a connection given number ``n``
    means ``n`` others are open.
    """
    soft, reserve = _descriptor_limits()
    return soft - reserve


#: A descriptor held for the process's life, duplicated to learn the lowest free number.
_probe_descriptor: int | None = None


def _lowest_free_descriptor() -> int:
    """The number a new descriptor would get now (the soft limit when there is none)."""
    global _probe_descriptor
    try:
        if _probe_descriptor is None:
            _probe_descriptor = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        probe = os.dup(_probe_descriptor)
    except OSError:
        return _descriptor_limits()[0]
    os.close(probe)
    return probe


def reserved_descriptor(transport: asyncio.BaseTransport) -> int | None:
    """The descriptor number of a just-accepted connection if it is one of the reserve.

    Only near the ceiling is the connection's own number asked for: uvloop keeps
    the socket object it answers with for as long as the connection lives (72
    bytes each). Far below it, the lowest free number (learnt by duplicating a
    descriptor held for the purpose) says no connection can be in the reserve:
    one can only be accepted there when every number below it was taken. (Run
    for every connection: two calls here, the system's three below them.)
    """
    soft, reserve = _descriptor_limits()
    ceiling = soft - reserve
    if _lowest_free_descriptor() < ceiling - DESCRIPTOR_RESERVE:
        return None
    sock = transport.get_extra_info("socket")
    if sock is None or sock.fileno() < ceiling:
        return None
    return int(sock.fileno())


def _refusal(status: bytes, message: str, extra: bytes = b"") -> bytes:
    """A whole ``Connection: close`` answer with a plain-text ``message``."""
    body = message.encode() + b"\n"
    head = b"HTTP/1.1 %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
    return head % (status, len(body)) + extra + b"Connection: close\r\n\r\n" + body


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
        self,
        server: _SniffingServer,
        transport: asyncio.Transport,
        data: bytes,
        head: bytes,
        peer: str | None = None,
    ) -> None:
        self._server = server
        self.transport = transport
        #: Every byte received so far, from the first byte of the first request.
        self.data = data
        #: The first request head (the start of ``data``, through its blank line).
        self.head = head
        #: The peer's address (``?`` if unknown), as the sniffer read it if given.
        self.peer = _peer(transport) if peer is None else peer

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
        if begins_reclaimed_head(data):  # (a handshake after fast-path publishes)
            return self._server.read_again(self.transport, data)
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

    __slots__ = ("_buffer", "_deadline", "_factory", "_peer", "_transport", "wheel_bucket")

    def __init__(self, factory: _SniffingServer) -> None:
        self._factory = factory
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._peer = ""
        #: When the head must be whole (the factory's wheel's clock); 0 once not pending.
        self._deadline = 0.0
        self.wheel_bucket = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)
        self._peer = peer = _peer(transport)
        factory = self._factory
        gate = factory.gate
        if gate is None:
            return
        descriptor = reserved_descriptor(transport)
        if descriptor is not None:
            gate.refused(
                "limit_descriptors",
                "connection from %s refused: out of file descriptors (this one is number %d; "
                "ulimit -n is %d, of which the last %d are kept for the server's own use)",
                peer,
                descriptor,
                *_descriptor_limits(),
            )
            _refuse(transport, _OUT_OF_DESCRIPTORS)
            return
        self._open_pending(transport)

    def read_again(self, transport: asyncio.Transport) -> None:
        """Take a kept-alive connection back from aiohttp, at the first byte of a request.

        It is pending again, exactly as a new connection (aiohttp's requests are
        not counted in the gate): counted, refused past the limits, with
        ``head_timeout`` to finish the head. Its descriptor was checked when accepted.
        """
        self._transport = transport
        self._peer = _peer(transport)
        if self._factory.gate is not None:
            self._open_pending(transport)

    def _open_pending(self, transport: asyncio.Transport) -> None:
        """Count the connection as pending and start its head deadline (or refuse it: 503)."""
        factory = self._factory
        gate = factory.gate
        assert gate is not None
        peer = self._peer
        refusal = gate.open_pending(peer)
        if refusal is not None:
            _refuse(transport, _refusal(b"503 Service Unavailable", refusal, b"Retry-After: 5\r\n"))
            return
        self._deadline = deadline = time.monotonic() + factory.head_timeout
        factory.wheel.wake_at(self, deadline)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        buffer = self._buffer + data if self._buffer else data
        end = head_length(buffer)
        if end is None and len(buffer) < MAX_HEAD:
            self._buffer = buffer
            return
        self._buffer = b""
        self._not_pending()
        claim = None
        if end is not None:
            claim = self._factory.route(buffer[:end], self._peer)
        if claim is None:
            self._factory.to_aiohttp(transport, buffer)
        else:
            claim(Takeover(self._factory, transport, buffer, buffer[:end], self._peer))

    def eof_received(self) -> bool | None:
        # A head cut short: let aiohttp answer what it has, as it would have.
        assert self._transport is not None
        self._not_pending()
        inner = self._factory.to_aiohttp(self._transport, self._buffer)
        return inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._not_pending()
        self._transport = None

    def _not_pending(self) -> None:
        """The head is whole or the connection gone: it leaves the pending count."""
        if self._deadline:
            self._deadline = 0.0
            factory = self._factory
            factory.wheel.forget(self)
            gate = factory.gate
            assert gate is not None
            gate.close_pending(self._peer)

    def on_deadline(self, now: float) -> float | None:
        """Woken by the wheel (:class:`~orbiter.transports.deadline_wheel.Deadlined`)."""
        if not self._deadline:
            return None
        if now < self._deadline:
            return self._deadline
        self._head_too_slow()
        return None

    def _head_too_slow(self) -> None:
        self._deadline = 0.0
        factory = self._factory
        assert factory.gate is not None
        factory.gate.close_pending(self._peer)
        factory.gate.refused(
            "limit_head_timeout",
            "connection from %s closed: no whole request head within %g s (limits.head_timeout)",
            self._peer,
            factory.head_timeout,
        )
        if self._transport is not None:
            self._buffer = b""
            _refuse(self._transport, factory.head_timeout_answer)


_OUT_OF_DESCRIPTORS = _refusal(
    b"503 Service Unavailable",
    "the server is out of file descriptors (ulimit -n); retry later",
    b"Retry-After: 5\r\n",
)


def _refuse(transport: asyncio.Transport, answer: bytes) -> None:
    """Answer a connection that is not served, and close it."""
    transport.write(answer)
    transport.close()


class _SniffingServer:
    """aiohttp's :class:`web.Server` with a sniffer in front of each connection."""

    def __init__(
        self,
        inner: web.Server,
        router: RawRouter,
        gate: ConnectionGate | None = None,
        head_timeout: float = 10.0,
    ) -> None:
        self._inner = inner
        self.route = router
        #: Counts and limits pending connections; None: no limits, no deadline.
        self.gate = gate
        self.head_timeout = head_timeout
        self.head_timeout_answer = _refusal(
            b"408 Request Timeout",
            f"no whole request head within {head_timeout:g} s (limits.head_timeout)",
        )
        #: Wakes the pending connections at their head deadlines (one timer for all).
        self.wheel = DeadlineWheel(min(1.0, max(0.02, head_timeout / 16)))
        self.loop = asyncio.get_running_loop()
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
        inner = NoticingRequestHandler.made_by(self._inner)  # tells when the client left
        inner.reclaimer = self
        transport.set_protocol(inner)
        inner.connection_made(transport)
        if not transport.is_reading() and not transport.is_closing():
            transport.resume_reading()
        if data:
            inner.data_received(data)
        return inner

    def may_take(self, data: bytes) -> bool:
        """Could ``data``, a kept-alive connection's next read, begin a reclaimed head?
        (:class:`~orbiter.transports.departure.Reclaimer`)"""
        return begins_reclaimed_head(data)

    def take(self, handler: NoticingRequestHandler, data: bytes) -> bool:
        """Read a kept-alive connection's next head again: ``handler`` is between requests
        and has not read ``data``, which may begin a reclaimed head. True if taken."""
        transport = handler.transport
        if transport is None or transport.is_closing():
            return False
        handler.detach()
        self.read_again(transport, data)
        return True

    def read_again(self, transport: asyncio.Transport, data: bytes) -> asyncio.Protocol:
        """A new sniffer reads the connection from ``data``, the first byte of a request.

        The protocol now serving it (the sniffer, or whoever it handed it to).
        """
        sniffer = _HeadSniffer(self)
        transport.set_protocol(sniffer)
        sniffer.read_again(transport)
        if not transport.is_closing():
            if not transport.is_reading():
                transport.resume_reading()
            sniffer.data_received(data)
        return cast(asyncio.Protocol, transport.get_protocol())

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
    """An AppRunner whose connections ``router`` may take before aiohttp parses them.

    With a ``gate``, each new connection counts in its limits until its first
    request head is whole, which it must be within ``head_timeout`` seconds.
    """

    def __init__(
        self,
        app: web.Application,
        router: RawRouter,
        *,
        gate: ConnectionGate | None = None,
        head_timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self._router = router
        self._gate = gate
        self._head_timeout = head_timeout

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        sniffing = _SniffingServer(server, self._router, self._gate, self._head_timeout)
        return cast(web.Server, sniffing)
