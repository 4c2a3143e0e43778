"""The browser TCP proxy: open a whitelisted backend connection, relay bytes both ways.

:class:`TcpProxy` is the one place a browser's request for ``host:port``
becomes a TCP connection: it asks the :class:`AccessPolicy` (deny by
default), counts connections (in total and per IP), resolves and connects
with a timeout, and names every failure with its own :class:`CloseCode`.
:meth:`TcpProxy.relay` then copies bytes between the backend and a
:class:`BrowserSide` (a transport adapter) until either side closes or the
connection idles out.

Flow control is end to end with bounded buffers: bytes from the backend
are read at most ``read_size`` at a time and the next read waits until the
browser side has taken the last chunk (its own send buffer is bounded), so
a slow browser stops the reads and TCP pushes back on the backend; bytes
from the browser are written to the backend and the next browser message
is not read until the backend's socket buffer has drained, so a slow
backend stops the transport's reads and TCP pushes back on the browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from orbiter.config.tcp import TcpSettings
from orbiter.logs import Counters, EventLog
from orbiter.protocol.fallback import TransportFallback
from orbiter.protocol.tcp_access import AccessPolicy, Requester, Target
from orbiter.services.fallback_report import record_fallback as report_fallback

log = logging.getLogger("orbiter.tcp")

#: ``getaddrinfo``-style results: (family, type, proto, canonname, (address, port)).
AddressInfo = tuple[int, int, int, str, tuple[str, int]]
#: Resolves ``(host, port)``; raises ``socket.gaierror`` for a name that does not exist.
Resolver = Callable[[str, int], Awaitable[list[AddressInfo]]]


def record_fallback(
    counters: Counters,
    events: EventLog,
    page: str | None,
    peer: str,
    parse: Callable[[], TransportFallback],
) -> None:
    """Count and log a TCPSocket's fallback report (``services/fallback_report.py``), the
    client named by its page's session id (``page``) in the log."""
    report_fallback(counters, events, f"tcp:{page}" if page else "tcp", peer, parse)


class CloseCode(enum.IntEnum):
    """How a proxied connection ended (WebSocket close codes; docs/protocol.md)."""

    #: The backend closed the connection (everything it sent was delivered first).
    BACKEND_CLOSED = 1000
    #: The server is shutting down.
    SHUTDOWN = 1001
    #: A browser message was larger than the limit.
    TOO_BIG = 1009
    #: Not sent: the browser side closed, so there is nobody to tell.
    CLIENT_CLOSED = 4000
    #: The request named no valid ``host:port``, or sent a malformed frame.
    BAD_REQUEST = 4400
    #: The server requires auth and the token is missing, not valid or expired.
    UNAUTHORIZED = 4401
    #: No ``[access]`` rule allows this destination for this page.
    DENIED = 4403
    #: The destination's host name does not resolve.
    UNKNOWN_HOST = 4404
    #: Nothing went either way for ``tcp.idle_timeout`` seconds.
    IDLE = 4408
    #: Too many proxied connections (``tcp.max_connections``, ``max_per_ip``, ``max_per_session``).
    LIMIT = 4429
    #: The backend connection failed after it was open (reset, broken pipe).
    BACKEND_ERROR = 4500
    #: The backend refused the connection or could not be reached.
    REFUSED = 4502
    #: The backend did not accept the connection within ``tcp.connect_timeout``.
    TIMEOUT = 4504


class ProxyError(Exception):
    """A proxied connection could not be opened; ``code`` says why."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class BrowserSide(Protocol):
    """The browser end of a relay, as a transport adapter provides it."""

    async def receive(self) -> bytes | None:
        """The browser's next bytes; None once it has closed."""
        ...

    async def send(self, data: bytes) -> None:
        """Deliver bytes; returns once the transport has taken them (its buffer is bounded).

        Raises ``ConnectionError`` when the browser has gone.
        """
        ...


@dataclass(slots=True)
class Backend:
    """An open backend connection and the slot it holds in the proxy's counts."""

    target: Target
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    _release: Callable[[], None] = field(repr=False)
    _closed: bool = False

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._release()
        self.writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await self.writer.wait_closed()


@dataclass(frozen=True, slots=True)
class Ending:
    """Why a relay ended: the code and reason the browser is told."""

    code: CloseCode
    reason: str


class TcpProxy:
    """Opens backend connections for browsers, within the rules and the limits."""

    def __init__(self, settings: TcpSettings, resolve: Resolver | None = None) -> None:
        self.settings = settings
        self.policy = AccessPolicy(settings.access)
        self._resolve = resolve if resolve is not None else _getaddrinfo
        self._per_ip: Counter[str] = Counter()
        self._per_session: Counter[tuple[str, str]] = Counter()
        self._total = 0
        self._relays: set[asyncio.Task[Ending]] = set()
        self._closing = False

    @property
    def open_connections(self) -> int:
        return self._total

    def check(self, target: Target, requester: Requester) -> None:
        """Raise :class:`ProxyError` (DENIED) unless a rule allows ``target``."""
        if not self.policy.allows(target, requester):
            raise ProxyError(
                CloseCode.DENIED, f"access to {target} is not allowed by the [access] rules"
            )

    async def open(
        self, target: Target, requester: Requester, peer_ip: str, session: str | None = None
    ) -> Backend:
        """Connect to ``target`` for a browser, or raise :class:`ProxyError` naming why not.

        ``session`` is the page's own id (orbiter.js sends one per page load); it is
        counted with the address, so a page that omits or varies it is still bound by
        ``max_per_ip``: the per-session limit keeps one runaway page from using up its
        address's share (a NAT, a household).
        """
        self.check(target, requester)
        if self._closing:
            raise ProxyError(CloseCode.SHUTDOWN, "server shutting down")
        if self._total >= self.settings.max_connections:
            raise ProxyError(CloseCode.LIMIT, "too many proxied connections on this server")
        if self._per_ip[peer_ip] >= self.settings.max_per_ip:
            raise ProxyError(CloseCode.LIMIT, "too many proxied connections from this address")
        page = (peer_ip, session) if session is not None else None
        if page is not None and self._per_session[page] >= self.settings.max_per_session:
            raise ProxyError(CloseCode.LIMIT, "too many proxied connections from this page")
        self._total += 1
        self._per_ip[peer_ip] += 1
        if page is not None:
            self._per_session[page] += 1

        def release() -> None:
            self._total -= 1
            self._per_ip[peer_ip] -= 1
            if self._per_ip[peer_ip] <= 0:
                del self._per_ip[peer_ip]
            if page is not None:
                self._per_session[page] -= 1
                if self._per_session[page] <= 0:
                    del self._per_session[page]

        try:
            reader, writer = await self._connect(target)
        except BaseException:
            release()
            raise
        log.info("tcp proxy: %s opened %s", peer_ip, target)
        return Backend(target, reader, writer, release)

    async def _connect(self, target: Target) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        loop = asyncio.get_running_loop()
        timeout = self.settings.connect_timeout
        try:
            async with asyncio.timeout(timeout):
                infos = await self._resolve(target.host, target.port)
        except socket.gaierror:
            raise ProxyError(CloseCode.UNKNOWN_HOST, f"host {target.host} not found") from None
        except TimeoutError:
            raise ProxyError(CloseCode.TIMEOUT, f"resolving {target.host} timed out") from None
        last: OSError | None = None
        for family, _, _, _, address in infos:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                async with asyncio.timeout(timeout):
                    await loop.sock_connect(sock, address)
            except TimeoutError:
                sock.close()
                raise ProxyError(
                    CloseCode.TIMEOUT, f"{target} did not accept within {timeout:g} s"
                ) from None
            except OSError as exc:
                sock.close()
                last = exc
                continue
            except BaseException:
                sock.close()
                raise
            return await asyncio.open_connection(sock=sock, limit=self.settings.read_size * 2)
        reason = last.strerror if last is not None and last.strerror else "unreachable"
        raise ProxyError(CloseCode.REFUSED, f"cannot connect to {target}: {reason}")

    async def relay(self, backend: Backend, browser: BrowserSide) -> Ending:
        """Copy bytes both ways until one side closes or the connection idles out."""
        inner = asyncio.create_task(_Relay(backend, browser, self.settings).run())
        self._relays.add(inner)
        try:
            return await asyncio.shield(inner)
        except asyncio.CancelledError:
            if inner.cancelled() and self._closing:
                return Ending(CloseCode.SHUTDOWN, "server shutting down")
            inner.cancel()  # the caller itself was cancelled
            with contextlib.suppress(asyncio.CancelledError):
                await inner
            raise
        finally:
            self._relays.discard(inner)
            await backend.close()

    async def close(self, timeout: float = 5.0) -> None:
        """Shutdown: end every relay (browsers are told 1001) and wait, bounded, for them."""
        self._closing = True
        relays = set(self._relays)
        for task in relays:
            task.cancel()
        if relays:
            await asyncio.wait(relays, timeout=timeout)


async def _getaddrinfo(host: str, port: int) -> list[AddressInfo]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [(f, t, p, c, (str(a[0]), int(a[1]))) for f, t, p, c, a in infos]


class _Relay:
    """One relay's two pumps and its idle watch."""

    def __init__(self, backend: Backend, browser: BrowserSide, settings: TcpSettings) -> None:
        self.backend = backend
        self.browser = browser
        self.settings = settings
        self.loop = asyncio.get_running_loop()
        self.last_activity = self.loop.time()

    async def run(self) -> Ending:
        tasks = {
            asyncio.create_task(self._down()),
            asyncio.create_task(self._up()),
            asyncio.create_task(self._idle()),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            return next(iter(done)).result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _down(self) -> Ending:
        """Backend to browser: one bounded read at a time, each delivered before the next."""
        reader = self.backend.reader
        while True:
            try:
                data = await reader.read(self.settings.read_size)
            except OSError as exc:
                return Ending(CloseCode.BACKEND_ERROR, f"backend connection failed: {exc}")
            if not data:
                return Ending(CloseCode.BACKEND_CLOSED, "the backend closed the connection")
            self.last_activity = self.loop.time()
            try:
                await self.browser.send(data)
            except ConnectionError:
                return Ending(CloseCode.CLIENT_CLOSED, "the browser went away")

    async def _up(self) -> Ending:
        """Browser to backend: the next message is read once the last one has drained."""
        writer = self.backend.writer
        while True:
            data = await self.browser.receive()
            if data is None:
                return Ending(CloseCode.CLIENT_CLOSED, "the browser closed the connection")
            self.last_activity = self.loop.time()
            if not data:
                continue
            try:
                writer.write(data)
                await writer.drain()
            except OSError as exc:
                return Ending(CloseCode.BACKEND_ERROR, f"backend connection failed: {exc}")

    async def _idle(self) -> Ending:
        limit = self.settings.idle_timeout
        while True:
            remaining = self.last_activity + limit - self.loop.time()
            if remaining <= 0:
                return Ending(CloseCode.IDLE, f"no traffic for {limit:g} s")
            await asyncio.sleep(remaining)
