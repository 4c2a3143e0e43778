"""The TCP proxy over SockJS (``/tcp/sockjs``), for networks where WebSocket is blocked.

Reuses the SockJS session machinery (``orbiter/transports/sockjs``): this
module is only the :class:`SessionApp` that carries one proxied connection
per SockJS session. SockJS messages are text, so:

- the client's first message is ``{"type": "connect", "host": H, "port": P}``,
  with ``"token": T`` (the connection token) when the server requires auth
  (SockJS has no headers of its own, and a token in the URL would be logged),
  and ``"fallback": {to, failed}`` when other transports failed first (counted
  and logged once the relay is authorized: ``protocol/fallback.py``);
- the server answers ``{"type": "open", "target": "H:P"}`` once connected;
- after that every message, both ways, is base64 of the bytes;
- the end is a SockJS close frame with the proxy's close code and reason.

Flow control: a client message is not accepted (its ``xhr_send`` is not
answered) until the backend has taken the previous bytes; bytes from the
backend wait while more than a watermark of the session's outgoing queue is
still unsent, so a slow browser pauses the backend. The session carries no
request headers, so only ``[access]`` rules without a Host or Origin
restriction apply here (restricted ones deny, failing closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial
from typing import NamedTuple

import orjson
from aiohttp import web

from orbiter.auth import Credentials
from orbiter.auth.hooks import forwarded
from orbiter.node import Node
from orbiter.protocol.fallback import parse_fallback
from orbiter.protocol.tcp_access import BadTarget, Requester, Target
from orbiter.protocol.tcp_websockify import (
    BadFrame,
    decode_base64,
    encode_base64,
    open_message,
    session_from,
)
from orbiter.services.tcp_auth import authorize_relay
from orbiter.services.tcp_proxy import CloseCode, Ending, ProxyError, TcpProxy, record_fallback
from orbiter.transports.sockjs.endpoint import (
    Connection,
    LiveSession,
    SessionApp,
    SockJSServer,
)
from orbiter.transports.sockjs.mount import endpoint_options, mount

log = logging.getLogger("orbiter.tcp")


class ConnectMessage(NamedTuple):
    """The SockJS client's first message, read."""

    target: Target
    session: str | None
    token: str | None
    #: The client's fallback report as sent (checked when recorded), or None.
    fallback: object


def parse_connect(message: str) -> ConnectMessage:
    """The target, page session, token and fallback report of the first message, or
    :class:`BadTarget`."""
    try:
        data = orjson.loads(message)
    except orjson.JSONDecodeError:
        raise BadTarget("the first message must be JSON: {type: 'connect', host, port}") from None
    if not isinstance(data, dict) or data.get("type") != "connect":
        raise BadTarget("the first message must be {type: 'connect', host, port}")
    host, port = data.get("host"), data.get("port")
    if not isinstance(host, str) or not isinstance(port, int | str) or isinstance(port, bool):
        raise BadTarget("'host' must be a string and 'port' a number")
    session = data.get("session")
    if session is not None and not isinstance(session, str):
        raise BadTarget("'session' must be a string")
    token = data.get("token")
    if token is not None and (not isinstance(token, str) or not token):
        raise BadTarget("'token' must be a non-empty string")
    target = Target.build(host, port)
    return ConnectMessage(target, session_from(session), token, data.get("fallback"))


class SockJSTcpApp:
    """One proxied TCP connection carried by one SockJS session."""

    def __init__(self, node: Node, proxy: TcpProxy, conn: Connection, watermark: int) -> None:
        self._node = node
        self._proxy = proxy
        self._conn = conn
        self._watermark = watermark
        self._relay: asyncio.Task[None] | None = None
        self._incoming: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=2)
        self._closed = False
        #: Set once the relay is over: a message still waiting for room is dropped.
        self._done = asyncio.Event()

    # --------------------------------------------------------------- SessionApp

    async def start(self) -> None:
        pass

    async def receive(self, message: str) -> None:
        if self._closed:
            return
        if self._relay is None:
            try:
                connect = parse_connect(message)
            except BadTarget as exc:
                self._end(Ending(CloseCode.BAD_REQUEST, str(exc)))
                return
            self._relay = asyncio.create_task(self._run(connect))
            return
        try:
            data = decode_base64(message)
        except BadFrame as exc:
            self._end(Ending(CloseCode.BAD_REQUEST, str(exc)))
            return
        # Waits while the backend is slow (the client's send is not answered meanwhile).
        put = asyncio.ensure_future(self._incoming.put(data))
        done = asyncio.ensure_future(self._done.wait())
        try:
            await asyncio.wait({put, done}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            put.cancel()
            done.cancel()

    async def stop(self) -> None:
        self._closed = True
        if self._relay is not None:
            self._relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relay

    # -------------------------------------------------------------- BrowserSide

    async def send(self, data: bytes) -> None:
        if self._closed:
            raise ConnectionResetError("the SockJS session is closed")
        self._conn.send(encode_base64(data))
        if isinstance(self._conn, LiveSession):
            # Flow control: the backend is read no faster than the browser takes it.
            await self._conn.until_queued_at_most(self._watermark)
            if self._closed or not self._conn.session.is_open:
                raise ConnectionResetError("the SockJS session is closed")

    async def receive_bytes(self) -> bytes | None:
        return await self._incoming.get()

    # -------------------------------------------------------------------- relay

    async def _run(self, connect: ConnectMessage) -> None:
        target, session, token = connect.target, connect.session, connect.token
        try:
            try:
                credentials = Credentials(
                    peer=self._conn.peer,
                    token=token,
                    headers=forwarded(self._conn.headers),
                    transport="tcp-sockjs",
                )
                node = self._node
                await authorize_relay(node.auth, node.counters, credentials)
                if connect.fallback is not None:
                    parse = partial(parse_fallback, connect.fallback)
                    events = node.pubsub.events
                    record_fallback(node.counters, events, session, self._conn.peer, parse)
                backend = await self._proxy.open(target, Requester(), self._conn.peer, session)
            except ProxyError as exc:
                log.info("tcp proxy (sockjs): %s -> %s refused: %s", self._conn.peer, target, exc)
                self._end(Ending(exc.code, exc.reason))
                return
            self._conn.send(open_message(target))
            ending = await self._proxy.relay(backend, _Browser(self))
            log.info(
                "tcp proxy (sockjs): %s -> %s ended: %s", self._conn.peer, target, ending.reason
            )
            self._end(ending)
        finally:
            self._done.set()

    def _end(self, ending: Ending) -> None:
        if not self._closed and ending.code is not CloseCode.CLIENT_CLOSED:
            self._conn.close(int(ending.code), ending.reason)
        self._closed = True


class _Browser:
    """The app as the relay's :class:`BrowserSide`."""

    def __init__(self, app: SockJSTcpApp) -> None:
        self._app = app

    async def receive(self) -> bytes | None:
        return await self._app.receive_bytes()

    async def send(self, data: bytes) -> None:
        await self._app.send(data)


def add_tcp_sockjs_routes(app: web.Application, node: Node, proxy: TcpProxy) -> None:
    """Mount ``/tcp/sockjs`` (before ``/tcp/{target}``); close its sessions on shutdown."""
    config = node.config
    options = endpoint_options(node)
    watermark = max(config.limits.outgoing_buffer // 4, 1)
    server = SockJSServer()

    def tcp_app(conn: Connection) -> SessionApp:
        return SockJSTcpApp(node, proxy, conn, watermark)

    server.add("", options, tcp_app)
    mount(app, node, server, "/tcp/sockjs")

    async def shutdown(app: web.Application) -> None:
        await server.close(int(CloseCode.SHUTDOWN), "server shutting down")

    app.on_shutdown.append(shutdown)
