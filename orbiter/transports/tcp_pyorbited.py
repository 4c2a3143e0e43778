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
closed. No authentication: bind it to loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from aiohttp import web

from orbiter.config_tcp import PyorbitedSettings
from orbiter.engine.base import TooManyStreams
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


def _body(data: bytes) -> Any:
    """pyorbited JSON-encodes bodies by default; anything else is passed on as text."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return data.decode("utf-8", errors="replace")


class PyorbitedListener:
    """Accepts pyorbited connections and turns their events into publications."""

    def __init__(self, node: Node, settings: PyorbitedSettings) -> None:
        self.node = node
        self.settings = settings
        self.server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(
            self._accept, self.settings.host, self.settings.port, limit=READ_SIZE
        )
        for sock in self.server.sockets:
            host, port = sock.getsockname()[:2]
            log.info("pyorbited listening on %s:%d (Orbit 1.0 events)", host, port)

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
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = OrbitParser(self.settings.max_body)
        peer = writer.get_extra_info("peername")
        while data := await reader.read(READ_SIZE):
            try:
                requests = parser.feed(data)
            except OrbitProtocolError as exc:
                log.warning("pyorbited connection from %s: %s", peer, exc)
                writer.write(failure(exc.request_id, str(exc)))
                await writer.drain()
                return
            for request in requests:
                writer.write(await self._handle(request))
            await writer.drain()

    async def _handle(self, request: EventRequest) -> bytes:
        keys, unreachable = [], []
        for text in request.recipients:
            try:
                keys.append(ConnectionKey.parse(text))
            except InvalidKey:
                unreachable.append(text)
        pubsub = self.node.pubsub
        present = {key for key in keys if pubsub.subscriber_count(key.channel) > 0}
        data = _body(request.body)
        refused: TooManyStreams | None = None
        for key in keys:  # PubSub.event, one key at a time: a refused key stops no other
            try:
                await pubsub.publish(key.channel, data)
            except TooManyStreams as exc:
                self.node.counters["limit_channels"] += 1
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
