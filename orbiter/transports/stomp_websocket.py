"""STOMP over WebSocket (``/stomp``) and over SockJS (``/stomp/sockjs``).

The WebSocket endpoint negotiates the ``v12.stomp``, ``v11.stomp`` and
``v10.stomp`` subprotocols (how @stomp/stompjs, Spring and RabbitMQ
Web-STOMP clients connect), the highest the client offers whatever its
order; each text or binary message holds any part of
the STOMP byte stream, and each batch the session queued goes out as one
message (text when it is UTF-8, else binary). Over SockJS, which carries
text only, each SockJS message is part of the stream and bodies must be
UTF-8. The SockJS side runs on orbiter's SockJS session machinery
(:mod:`orbiter.transports.sockjs`), as a second endpoint with its own prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from aiohttp import WSMsgType, web

from orbiter.auth.hooks import forwarded
from orbiter.config.settings import Limits
from orbiter.logs import Counters
from orbiter.protocol.websocket_handshake import preferred_subprotocol
from orbiter.services.outbox import Pull
from orbiter.services.stomp.broker import StompBroker
from orbiter.services.stomp.session import StompSession
from orbiter.transports.frame_rate import RatedFrames
from orbiter.transports.sockjs.endpoint import Connection

#: In order of preference: the highest version the client offers is chosen.
SUBPROTOCOLS = ("v12.stomp", "v11.stomp", "v10.stomp")


def websocket_handler(
    broker: StompBroker, limits: Limits, heartbeat: float, counters: Counters
) -> Callable[[web.Request], Awaitable[web.WebSocketResponse]]:
    """The aiohttp handler of STOMP over WebSocket (frames read at ``limits.frame_rate``)."""

    async def handle(request: web.Request) -> web.WebSocketResponse:
        chosen = preferred_subprotocol(
            request.headers.getall("Sec-WebSocket-Protocol", []), SUBPROTOCOLS
        )
        ws = web.WebSocketResponse(
            protocols=() if chosen is None else (chosen,),
            max_msg_size=limits.max_message_size + 1,  # aiohttp refuses its bound itself
            autoping=False,  # pings are answered, and counted, by RatedFrames
            compress=False,
            heartbeat=heartbeat,
        )
        await ws.prepare(request)
        peer = request.remote or "?"
        session = broker.new_session(
            peer=peer, transport="websocket", headers=forwarded(request.headers)
        )
        output = asyncio.create_task(_write(session, ws))
        beats = asyncio.create_task(session.keepalive())
        try:
            async for msg in RatedFrames(ws, limits.frame_rate, counters, peer, session.client_id):
                if msg.type is WSMsgType.TEXT:
                    await session.receive(msg.data.encode())
                elif msg.type is WSMsgType.BINARY:
                    await session.receive(msg.data)
                if session.closed:
                    break
        finally:
            beats.cancel()
            await broker.end_session(session)
            await output
        return ws

    return handle


async def _write(session: StompSession, ws: web.WebSocketResponse) -> None:
    output = Pull(session.outbox)
    with contextlib.suppress(ConnectionError):
        while batch := await output.take():
            data = b"".join(batch)
            try:
                await ws.send_str(data.decode())
            except UnicodeDecodeError:
                await ws.send_bytes(data)
            session.drained()
    if not ws.closed:
        with contextlib.suppress(ConnectionError):
            await ws.close(code=1000, message=session.close_reason[:120].encode())


class SockJSStompApp:
    """STOMP over one SockJS session."""

    def __init__(self, broker: StompBroker, conn: Connection) -> None:
        self._broker = broker
        self._conn = conn
        self._session: StompSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        session = self._session = self._broker.new_session(
            peer=self._conn.peer, transport="sockjs", headers=forwarded(self._conn.headers)
        )
        self._tasks = [
            asyncio.create_task(self._write(session)),
            asyncio.create_task(session.keepalive()),
        ]

    async def receive(self, message: str) -> None:
        if self._session is not None:
            await self._session.receive(message.encode())

    async def stop(self) -> None:
        if self._session is not None:
            self._tasks[1].cancel()
            await self._broker.end_session(self._session)
            await self._tasks[0]

    async def _write(self, session: StompSession) -> None:
        output = Pull(session.outbox)
        while batch := await output.take():
            self._conn.send(b"".join(batch).decode("utf-8", errors="replace"))
            session.drained()
        self._conn.close(1000, session.close_reason[:120])
