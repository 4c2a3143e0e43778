"""The TCP proxy over a raw WebSocket: ``/tcp`` and ``/tcp/host:port`` (websockify-compatible).

A thin adapter: it accepts the WebSocket, asks :class:`TcpProxy` for the
backend the request names, and relays WebSocket messages as bytes in the
framing the subprotocol chose (``orbiter/protocol/tcp_websockify.py``):
plain websockify without one, orbiter.js's open message under ``orbiter.tcp``.
When the server requires auth, the request must carry a connection token
(``?token=`` or ``Authorization: Bearer``; :mod:`orbiter.services.tcp_auth`),
else it is closed with 4401 before any backend is contacted. orbiter.js's
TCPSocket says which transports failed before this one in ``?fallback=``
(JSON ``{to, failed}``, ``protocol/fallback.py``), counted and logged once
the relay is authorized.
Every ending is a WebSocket close with a documented code and reason
(``CloseCode``). The browser's heartbeat is WebSocket pings, so a browser
that vanished without a FIN is noticed within ``session.ping_interval`` +
``session.pong_timeout``, and its backend connection is closed. Frames are
read at most ``limits.frame_rate`` a second (:mod:`orbiter.transports.frame_rate`).
"""

from __future__ import annotations

import contextlib
import logging
from functools import partial

from aiohttp import WebSocketError, WSCloseCode, WSMsgType, web

from orbiter.protocol.fallback import parse_fallback_text
from orbiter.protocol.tcp_access import BadTarget, Requester
from orbiter.protocol.tcp_websockify import (
    SUBPROTOCOLS,
    BadFrame,
    Framing,
    decode_base64,
    encode_base64,
    open_message,
    session_from,
    target_from,
)
from orbiter.protocol.websocket_handshake import preferred_subprotocol
from orbiter.services.tcp_auth import authorize_relay
from orbiter.services.tcp_proxy import CloseCode, Ending, ProxyError, TcpProxy, record_fallback
from orbiter.transports.app_keys import NODE
from orbiter.transports.frame_rate import RatedFrames
from orbiter.transports.request_checks import request_credentials
from orbiter.transports.tcp_sockjs import add_tcp_sockjs_routes

log = logging.getLogger("orbiter.tcp")

TCP_PROXY = web.AppKey("tcp_proxy", TcpProxy)


class _WebSocketBrowser:
    """One WebSocket as the browser side of a relay, read at ``limits.frame_rate``."""

    def __init__(self, ws: web.WebSocketResponse, framing: Framing, frames: RatedFrames) -> None:
        self.ws = ws
        self.framing = framing
        self._frames = frames
        #: Set when the browser broke the protocol; the relay then ends with it.
        self.error: Ending | None = None

    async def receive(self) -> bytes | None:
        msg = await self._frames.receive()
        if msg.type is WSMsgType.BINARY:
            return bytes(msg.data)
        if msg.type is WSMsgType.TEXT:
            if self.framing is Framing.BASE64:
                try:
                    return decode_base64(msg.data)
                except BadFrame as exc:
                    self.error = Ending(CloseCode.BAD_REQUEST, str(exc))
                    return None
            return str(msg.data).encode()
        if (
            msg.type is WSMsgType.ERROR
            and isinstance(msg.data, WebSocketError)
            and msg.data.code == WSCloseCode.MESSAGE_TOO_BIG
        ):  # aiohttp has already closed the WebSocket with 1009
            self.error = Ending(CloseCode.TOO_BIG, "message too big")
        return None

    async def send(self, data: bytes) -> None:
        if self.ws.closed:
            raise ConnectionResetError("the WebSocket is closed")
        if self.framing is Framing.BASE64:
            await self.ws.send_str(encode_base64(data))
        else:
            await self.ws.send_bytes(data)


async def tcp_websocket_handler(request: web.Request) -> web.WebSocketResponse:
    node = request.app[NODE]
    proxy = request.app[TCP_PROXY]
    timing = node.config.session
    chosen = preferred_subprotocol(
        request.headers.getall("Sec-WebSocket-Protocol", []), SUBPROTOCOLS
    )
    ws = web.WebSocketResponse(
        protocols=() if chosen is None else (chosen,),
        max_msg_size=node.config.limits.max_message_size + 1,  # aiohttp refuses its bound itself
        autoping=False,  # pings are answered, and counted, by RatedFrames
        compress=False,
        heartbeat=timing.ping_interval,
    )
    ws._pong_heartbeat = timing.pong_timeout
    await ws.prepare(request)
    framing = Framing.for_subprotocol(ws.ws_protocol)
    peer = request.remote or "?"
    try:
        target = target_from(
            request.match_info.get("target", ""),
            request.query,
            token_is_target=not node.config.auth_required,
        )
        session = session_from(request.query.get("session"))
    except BadTarget as exc:
        await _close(ws, CloseCode.BAD_REQUEST, str(exc))
        return ws
    requester = Requester(host=request.host, origin=request.headers.get("Origin"))
    try:
        await authorize_relay(node.auth, node.counters, request_credentials(request, "tcp"))
        report = request.query.get("fallback")
        if report is not None:
            parse = partial(parse_fallback_text, report)
            record_fallback(node.counters, node.pubsub.events, session, peer, parse)
        backend = await proxy.open(target, requester, peer, session)
    except ProxyError as exc:
        log.info("tcp proxy: %s -> %s refused: %s", peer, target, exc.reason)
        await _close(ws, exc.code, exc.reason)
        return ws
    frames = RatedFrames(ws, node.config.limits.frame_rate, node.counters, peer)
    browser = _WebSocketBrowser(ws, framing, frames)
    try:
        if framing is Framing.NATIVE:
            await ws.send_str(open_message(target))
        ending = await proxy.relay(backend, browser)
    except ConnectionError:
        await backend.close()
        return ws
    if browser.error is not None:
        ending = browser.error
    log.info("tcp proxy: %s -> %s ended: %s", peer, target, ending.reason)
    await _close(ws, ending.code, ending.reason)
    return ws


async def _close(ws: web.WebSocketResponse, code: CloseCode, reason: str) -> None:
    if ws.closed or code is CloseCode.CLIENT_CLOSED:
        with contextlib.suppress(ConnectionError):
            await ws.close()
        return
    with contextlib.suppress(ConnectionError):
        # A close reason is at most 123 bytes of valid UTF-8: cut on a character boundary.
        message = reason.encode()[:120].decode("utf-8", "ignore").encode()
        await ws.close(code=int(code), message=message)


def add_tcp_routes(app: web.Application, proxy: TcpProxy) -> None:
    """Mount ``/tcp``, ``/tcp/sockjs`` and ``/tcp/{target}``; end every relay at shutdown."""
    app[TCP_PROXY] = proxy
    app.router.add_get("/tcp", tcp_websocket_handler)
    add_tcp_sockjs_routes(app, app[NODE], proxy)
    app.router.add_get("/tcp/{target}", tcp_websocket_handler)

    async def shutdown(app: web.Application) -> None:
        await proxy.close()

    app.on_shutdown.append(shutdown)
