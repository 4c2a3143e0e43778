"""The native protocol over a raw WebSocket (``/connection/websocket``).

Each text (or binary, UTF-8) frame from the client holds one or more
newline-separated commands. The adapter is pushed to (an
:class:`~orbiter.session.outbox.Sink`): what the session queued during one
event-loop iteration goes out as one text frame, its messages separated by
newlines, and a channel's batch of publications is framed once
(:meth:`SharedBatch.framed`) and those same bytes are written straight to
every subscriber's transport, bypassing aiohttp's per-send framing.

Heartbeats are WebSocket ping frames (browsers answer them by themselves):
one after ``session.ping_interval`` seconds without traffic; a connection
whose pong does not come within ``session.pong_timeout`` is closed, so a
client that vanished without a FIN is freed within interval + timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct

from aiohttp import WSMsgType, web

from orbiter.http.keys import NODE
from orbiter.node import TooManyConnections
from orbiter.protocol.native import DisconnectCode
from orbiter.services.shared_batch import SharedBatch
from orbiter.session.session import ClientSession
from orbiter.transports.guard import request_credentials

log = logging.getLogger("orbiter.websocket")


async def websocket_handler(request: web.Request) -> web.WebSocketResponse:
    node = request.app[NODE]
    timing = node.config.session
    ws = web.WebSocketResponse(
        # aiohttp refuses a message of max_msg_size bytes or more; the limit is inclusive.
        max_msg_size=node.config.limits.max_message_size + 1,
        autoping=True,
        compress=False,
        heartbeat=timing.ping_interval,
    )
    # aiohttp waits heartbeat/2 for the pong; orbiter makes that wait configurable.
    ws._pong_heartbeat = timing.pong_timeout
    await ws.prepare(request)
    try:
        session = node.new_session(request.remote or "?", request_credentials(request, "websocket"))
    except TooManyConnections as exc:
        await ws.close(code=DisconnectCode.TOO_MANY_CONNECTIONS, message=str(exc).encode()[:120])
        return ws
    session.on_slow_consumer = lambda: cut_later(request, timing.pong_timeout)
    closer: list[asyncio.Task[None]] = []
    transport = request.transport
    if transport is not None:

        def on_close() -> None:
            if session.close_code is not None and not ws.closed:  # closed by the server
                closer.append(asyncio.ensure_future(_close(ws, session)))

        session.outbox.attach(_WebSocketSink(transport), node.flusher, on_close)
    else:  # the peer went away during the handshake
        session.close(DisconnectCode.SHUTDOWN, "connection lost")
    try:
        async for msg in ws:
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                await session.receive(msg.data)
                if session.closed:
                    break
            elif msg.type is WSMsgType.ERROR:
                # aiohttp closes with 1009 for a frame over max_msg_size.
                node.counters["limit_message_size"] += 1
                log.info("websocket from %s: %s", request.remote, ws.exception())
    finally:
        await node.end_session(session)
        for task in closer:
            await task
    return ws


def cut_later(request: web.Request, delay: float) -> None:
    """Abort the connection in ``delay`` seconds unless it has closed by then.

    For a slow consumer: its close frame waits behind what it does not read.
    """

    def cut() -> None:
        if request.transport is not None:
            log.info("websocket from %s: cut (slow consumer)", request.remote)
            request.transport.abort()

    asyncio.get_running_loop().call_later(delay, cut)


#: The key under which a batch caches its WebSocket framing.
_FRAMING = "websocket-text"


def text_frame(payload: bytes) -> bytes:
    """One unmasked, final WebSocket text frame (RFC 6455 section 5.2)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def _frame_batch(messages: list[bytes]) -> bytes:
    return text_frame(b"\n".join(messages))


class _WebSocketSink:
    """Writes pre-framed text frames to the connection's transport."""

    __slots__ = ("_transport",)

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    def backlog(self) -> int:
        return self._transport.get_write_buffer_size()

    def write(self, messages: list[bytes]) -> None:
        if not self._transport.is_closing():
            self._transport.write(_frame_batch(messages))

    def write_batch(self, batch: SharedBatch) -> None:
        if not self._transport.is_closing():
            self._transport.write(batch.framed(_FRAMING, _frame_batch))


async def _close(ws: web.WebSocketResponse, session: ClientSession) -> None:
    """Close with the session's code (a slow consumer is cut by :func:`cut_later`)."""
    if not ws.closed and session.close_code is not None:
        with contextlib.suppress(ConnectionError):
            await ws.close(code=session.close_code, message=session.close_reason.encode())
