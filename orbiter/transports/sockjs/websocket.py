"""SockJS over WebSocket on aiohttp: ``/<server>/<session>/websocket`` and raw ``/websocket``.

On the session URL each WebSocket text frame carries one SockJS frame
(``o``, ``h``, ``a[...]``, ``c[...]``), and the client sends JSON arrays of
messages; broken JSON ends the connection. On the raw URL there is no
SockJS framing: each text frame is one message, and the session's close
becomes the WebSocket close code and reason. Either way the session lives
exactly as long as its WebSocket. Frames are read at most
``limits.frame_rate`` a second (:class:`~orbiter.transports.frame_rate.RatedFrames`).
(The hixie-76 draft, which aiohttp refuses, is served by
:mod:`orbiter.transports.sockjs.hixie76`.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import WSMsgType, web

from orbiter.protocol.sockjs.frames import (
    MESSAGE_TOO_BIG,
    Close,
    Frame,
    Messages,
    PayloadError,
    decode_websocket,
    encode_frame,
    largest_message_size,
)
from orbiter.transports.frame_rate import RatedFrames
from orbiter.transports.sockjs.endpoint import Endpoint, LiveSession

log = logging.getLogger("orbiter.sockjs")

#: Seconds between a raw WebSocket's handshake and its session's first frame.
RAW_START_DELAY = 0.02

#: Close codes a server may put in a WebSocket close frame (RFC 6455, 7.4).
_SENDABLE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011})


def websocket_close_code(code: int) -> int:
    """``code`` if a WebSocket close frame may carry it, else 1000."""
    return code if code in _SENDABLE_CODES or 3000 <= code <= 4999 else 1000


def _refusal(request: web.Request) -> web.Response | None:
    """A 400 for requests that cannot be WebSocket handshakes, with the reason."""
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return web.Response(status=400, text='Can "Upgrade" only to "WebSocket".\n')
    tokens = {t.strip().lower() for t in request.headers.get("Connection", "").split(",")}
    if "upgrade" not in tokens:
        return web.Response(status=400, text='"Connection" must be "Upgrade".\n')
    return None


class _FramedReceiver:
    """Writes each SockJS frame as one text frame."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self._ws = ws

    def alive(self) -> bool:
        return not self._ws.closed

    async def write(self, frame: Frame) -> bool:
        await self._ws.send_str(encode_frame(frame))
        return True


class _RawReceiver(_FramedReceiver):
    """Writes each message as one text frame; the close frame closes the WebSocket."""

    async def write(self, frame: Frame) -> bool:
        if isinstance(frame, Messages):
            for message in frame.strings():
                await self._ws.send_str(message)
        elif isinstance(frame, Close):
            await self._ws.close(
                code=websocket_close_code(frame.code), message=frame.reason.encode()
            )
        return True


async def sockjs_websocket(request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    options = endpoint.options
    ws = web.WebSocketResponse(
        max_msg_size=options.max_body,
        autoping=False,  # pings are answered, and counted, by RatedFrames
        compress=False,
        # Pings find clients that vanished without a FIN; "h" frames alone would not.
        heartbeat=options.heartbeat,
    )
    await ws.prepare(request)
    live = endpoint.connect(request.remote or "?")
    live.request_headers = request.headers
    writer = asyncio.create_task(_write(ws, live, _FramedReceiver(ws)))
    try:
        async for msg in RatedFrames(ws, options.frame_rate, options.counters, live.peer):
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            try:
                messages = decode_websocket(msg.data)
            except PayloadError:
                log.info("sockjs websocket from %s: broken JSON, closing", request.remote)
                await ws.close(code=1002, message=b"Broken JSON encoding.")
                break
            if largest_message_size(messages) > options.max_message_size:
                options.counters["limit_message_size"] += 1
                log.info("sockjs websocket from %s: message over the size limit", request.remote)
                live.close(MESSAGE_TOO_BIG.code, MESSAGE_TOO_BIG.reason)
                break
            await live.deliver(messages)
    finally:
        if live.session.is_open:
            live.end()
        await writer
    return ws


async def _write(ws: web.WebSocketResponse, live: LiveSession, receiver: _FramedReceiver) -> None:
    """Serve the session until it closes, then close the WebSocket."""
    await live.serve(receiver)
    live.end()
    if not ws.closed:
        with contextlib.suppress(ConnectionError):
            await ws.close(code=1000)


async def raw_websocket(request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    options = endpoint.options
    ws = web.WebSocketResponse(
        max_msg_size=options.max_message_size + 1,  # aiohttp's bound is exclusive
        autoping=False,
        compress=False,
        heartbeat=options.heartbeat,
    )
    await ws.prepare(request)
    # With Nagle's algorithm off, a session that closes at once would put its
    # close frame in the same segment as the handshake, which some clients
    # (ws4py, used by the SockJS protocol suite) cannot take.
    await asyncio.sleep(RAW_START_DELAY)
    live = endpoint.connect(request.remote or "?")
    live.request_headers = request.headers
    writer = asyncio.create_task(_write(ws, live, _RawReceiver(ws)))
    try:
        async for msg in RatedFrames(ws, options.frame_rate, options.counters, live.peer):
            if msg.type is WSMsgType.TEXT:
                await live.deliver([msg.data])
            elif msg.type is WSMsgType.BINARY:
                try:
                    await live.deliver([msg.data.decode()])
                except UnicodeDecodeError:
                    await ws.close(code=1007, message=b"messages must be UTF-8")
                    break
    finally:
        if live.session.is_open:
            live.end()
        await writer
    return ws
