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

from aiohttp import WSMsgType, web

from orbiter.http.keys import NODE
from orbiter.session.session import ClientSession


async def websocket_handler(request: web.Request) -> web.WebSocketResponse:
    node = request.app[NODE]
    timing = node.config.session
    ws = web.WebSocketResponse(
        max_msg_size=node.config.limits.max_message_size,
        autoping=True,
        compress=False,
        heartbeat=timing.ping_interval,
    )
    # aiohttp waits heartbeat/2 for the pong; orbiter makes that wait configurable.
    ws._pong_heartbeat = timing.pong_timeout
    await ws.prepare(request)
    session = node.new_session(peer=request.remote or "?")
    writer = asyncio.create_task(_write(ws, session))
    try:
        async for msg in ws:
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                await session.receive(msg.data)
                if session.closed:
                    break
    finally:
        await node.end_session(session)
        await writer
    return ws


async def _write(ws: web.WebSocketResponse, session: ClientSession) -> None:
    with contextlib.suppress(ConnectionError):
        while batch := await session.outbox.take():
            await ws.send_frame(b"\n".join(batch), WSMsgType.TEXT)
    if not ws.closed and session.close_code is not None:
        with contextlib.suppress(ConnectionError):
            await ws.close(code=session.close_code, message=session.close_reason.encode())
