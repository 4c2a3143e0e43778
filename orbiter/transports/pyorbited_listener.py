"""The pyorbited listener (the seed's ``orbit://:9000``): old app servers' ``orbit.event``.

A thin asyncio server over :class:`OrbitParser`. Each ``Event`` request is
Orbited's ``event(keys, message)``: the body is decoded as JSON (pyorbited's
default; text otherwise) and published through :meth:`PubSub.event` to each
recipient key's channel, the same path as ``POST /api/event``. The answer
is ``Success``, or ``Failure`` naming the recipients that are malformed or
had no subscriber on this node at that moment (the publication is still
kept in the key channel's history, so a browser that reconnects within the
disconnect delay gets it), or whose channel would be one past
``limits.max_channels`` (the message then says so; counted). A request
that breaks the protocol is answered ``Failure`` and the connection
closed (counted as ``pyorbited_protocol_errors``).

The protocol has no authentication, so the listener binds off loopback
only with ``pyorbited.allow_remote`` (and then warns at start-up). Each
connection is bounded: ``max_connections`` open at once (past it a new one
is answered ``Failure`` and closed, counted as ``limit_pyorbited_connections``),
``idle_timeout`` seconds without a byte from the peer before its first
request or within one, or without the peer reading our answers, closes it
(``pyorbited_idle_closed``); between requests a connection that was served
may wait as long as it likes (pyorbited's ``Client()`` is made once per
process and kept, however rarely it sends), and the parser
holds at most one request of ``max_request`` bytes. Refusals are logged at
most once a second per kind, with a count of the ones in between.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from orbiter.config.tcp import PyorbitedSettings, is_loopback
from orbiter.engine.base import PublishFailed, TooManyStreams
from orbiter.node import Node
from orbiter.protocol.keys import ConnectionKey, InvalidKey
from orbiter.protocol.pyorbited import (
    EventRequest,
    OrbitParser,
    OrbitProtocolError,
    failure,
    success,
)

log = logging.getLogger("orbiter.pyorbited")

READ_SIZE = 65_536
#: Seconds a closing connection's last answer may take to be read before it is dropped.
CLOSE_TIMEOUT = 5.0
#: Seconds of quiet after which a refused peer is taken to have stopped sending.
LINGER_QUIET = 1.0


def _body(data: bytes) -> Any:
    """pyorbited JSON-encodes bodies by default; anything else is passed on as text."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return data.decode("utf-8", errors="replace")


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close after a refusal and discard what the peer still sends, for a bounded time.

    Closing with unread bytes would reset the connection, and the peer could
    lose the answer that says why. A peer that stops sending for
    :data:`LINGER_QUIET` seconds is done.
    """
    try:
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(CLOSE_TIMEOUT):
            while True:
                async with asyncio.timeout(LINGER_QUIET):
                    if not await reader.read(READ_SIZE):
                        return
    except (TimeoutError, ConnectionError):
        pass


class RefusalLog:
    """Warnings that a peer can cause at will, at most one line per ``interval`` per kind.

    A line says how many of its kind were not logged since the previous one.
    """

    def __init__(self, interval: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._unlogged: Counter[str] = Counter()

    def warning(self, kind: str, message: str, *args: object) -> None:
        now = self._clock()
        if now - self._last.get(kind, -math.inf) < self.interval:
            self._unlogged[kind] += 1
            return
        self._last[kind] = now
        unlogged = self._unlogged.pop(kind, 0)
        if unlogged:
            message += " (and %d more since the last such line)"
            args += (unlogged,)
        log.warning(message, *args)


class PyorbitedListener:
    """Accepts pyorbited connections and turns their events into publications."""

    def __init__(self, node: Node, settings: PyorbitedSettings) -> None:
        self.node = node
        self.settings = settings
        self.server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._refusals = RefusalLog()

    async def start(self) -> None:
        self.server = await asyncio.start_server(
            self._accept, self.settings.host, self.settings.port, limit=READ_SIZE
        )
        for sock in self.server.sockets:
            host, port = sock.getsockname()[:2]
            log.info("pyorbited listening on %s:%d (Orbit 1.0 events)", host, port)
            if not is_loopback(host):
                log.warning(
                    "pyorbited is listening on %s:%d, off loopback (pyorbited.allow_remote = "
                    "true): the Orbit protocol has no authentication, so anyone who can reach "
                    "this port can publish to every channel and Orbited key without a key",
                    host,
                    port,
                )

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(set(self._connections), timeout=5)
        if self.server is not None:
            await self.server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        limit = self.settings.max_connections
        if len(self._connections) >= limit:
            self.node.counters["limit_pyorbited_connections"] += 1
            self._refusals.warning(
                "full",
                "pyorbited connection from %s refused: %d open (pyorbited.max_connections)",
                peer,
                limit,
            )
            writer.write(
                failure(None, f"too many connections ({limit}, pyorbited.max_connections)")
            )
            writer.close()  # a small answer: it goes out with the FIN, or the peer resets
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer, peer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await writer.wait_closed()
            except TimeoutError:  # the peer reads nothing: drop what it did not read
                writer.transport.abort()
            except (ConnectionError, asyncio.CancelledError):
                pass

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: object
    ) -> None:
        """Answer requests until EOF, a protocol error (answered, then closed) or idleness."""
        settings = self.settings
        parser = OrbitParser(settings.max_body, settings.max_request)
        idle = settings.idle_timeout
        loop = asyncio.get_running_loop()
        reading = True
        served = False
        try:
            async with asyncio.timeout(None) as deadline:
                while True:
                    reading = True
                    waiting = not served or parser.mid_request
                    deadline.reschedule(loop.time() + idle if waiting else None)
                    data = await reader.read(READ_SIZE)
                    if not data:
                        return
                    deadline.reschedule(None)  # an engine that takes its time is not idleness
                    try:
                        requests = parser.feed(data)
                    except OrbitProtocolError as exc:
                        self.node.counters["pyorbited_protocol_errors"] += 1
                        self._refusals.warning(
                            "protocol", "pyorbited connection from %s: %s", peer, exc
                        )
                        writer.write(failure(exc.request_id, str(exc)))
                        break
                    for request in requests:
                        writer.write(await self._handle(request))
                        served = True
                    reading = False
                    deadline.reschedule(loop.time() + idle)
                    await writer.drain()
        except TimeoutError:
            if not deadline.expired():  # raised by the engine, not our deadline
                raise
            self.node.counters["pyorbited_idle_closed"] += 1
            if reading:
                log.info("pyorbited connection from %s closed: idle for %g s", peer, idle)
                writer.write(
                    failure(None, f"closed: no byte for {idle:g} s (pyorbited.idle_timeout)")
                )
            else:
                log.info("pyorbited connection from %s dropped: not reading answers", peer)
                writer.transport.abort()
            return
        await _linger(reader, writer)

    async def _handle(self, request: EventRequest) -> bytes:
        keys, unreachable = [], []
        for text in request.recipients:
            try:
                keys.append(ConnectionKey.parse(text))
            except InvalidKey:
                unreachable.append(text)
        pubsub = self.node.pubsub
        reachable = await pubsub.reachable([key.channel for key in keys])  # on any node
        present = {key for key in keys if key.channel in reachable}
        data = _body(request.body)
        refused: TooManyStreams | PublishFailed | None = None
        for key in keys:  # PubSub.event, one key at a time: a refused key stops no other
            try:
                await pubsub.publish(key.channel, data)
            except (TooManyStreams, PublishFailed) as exc:  # counted by PubSub; a full disk
                present.discard(key)
                refused = exc
        unreachable += [str(key) for key in keys if key not in present]
        if unreachable:
            message = "Failed to reach one or more recipients"
            if refused is not None:
                log.warning("pyorbited event %s: %s", request.id, refused)
                message += f" ({refused})"
            return failure(request.id, message, tuple(unreachable))
        return success(request.id)


def add_pyorbited_listener(app: web.Application, node: Node) -> None:
    """Run the listener with the app when ``[pyorbited] enabled`` (INI: ``orbit://``)."""
    settings = node.config.pyorbited
    if not settings.enabled:
        return
    listener = PyorbitedListener(node, settings)

    async def start(app: web.Application) -> None:
        await listener.start()

    async def stop(app: web.Application) -> None:
        await listener.close()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
