"""The native protocol over a raw WebSocket (``/connection/websocket``).

Each text (or binary, UTF-8) frame from the client holds one or more
newline-separated commands. Everything the session queued since the last
write goes out as one text frame, its messages separated by newlines.

Heartbeats are WebSocket ping frames (browsers answer them by themselves):
one after ``session.ping_interval`` seconds without traffic; a connection
whose pong does not come within ``session.pong_timeout`` is closed, so a
client that vanished without a FIN is freed within interval + timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import WSMsgType, web

from orbiter.http.keys import NODE
from orbiter.node import TooManyConnections
from orbiter.protocol.native import DisconnectCode
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
    writer = asyncio.create_task(_write(ws, session))
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
        await writer
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


async def _write(ws: web.WebSocketResponse, session: ClientSession) -> None:
    with contextlib.suppress(ConnectionError):
        while batch := await session.outbox.take():
            await ws.send_frame(b"\n".join(batch), WSMsgType.TEXT)
    if not ws.closed and session.close_code is not None:
        with contextlib.suppress(ConnectionError):
            await ws.close(code=session.close_code, message=session.close_reason.encode())
