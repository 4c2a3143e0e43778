"""Wires the STOMP broker into a node's application: its TCP listener, WebSocket and SockJS.

:func:`add_stomp` creates the node's :class:`StompBroker`, mounts STOMP over
WebSocket at ``stomp.websocket_path`` and over SockJS under
``<websocket_path>/sockjs`` (when ``stomp.websocket``), starts the TCP
listener on start-up when ``stomp.listen`` is set (logging
``stomp listening on host:port``), and on shutdown sends every STOMP
connection an ERROR saying the server is going away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

from orbiter.config.stomp import parse_listen
from orbiter.node import Node
from orbiter.services.stomp.broker import StompBroker
from orbiter.transports.sockjs.endpoint import Connection, SessionApp, SockJSServer
from orbiter.transports.sockjs.mount import endpoint_options, mount
from orbiter.transports.stomp_tcp import start_tcp_listener
from orbiter.transports.stomp_websocket import SockJSStompApp, websocket_handler

log = logging.getLogger("orbiter.stomp")

STOMP_BROKER = web.AppKey("stomp_broker", StompBroker)


def add_stomp(app: web.Application, node: Node) -> StompBroker:
    config = node.config
    settings = config.stomp
    broker = StompBroker(config, node.pubsub, node.auth, node)
    app[STOMP_BROKER] = broker
    sockjs: SockJSServer | None = None
    if settings.websocket:
        path = settings.websocket_path
        app.router.add_get(
            path,
            websocket_handler(broker, config.limits, config.session.ping_interval, node.counters),
        )
        sockjs = SockJSServer()
        options = endpoint_options(node)

        def stomp_app(conn: Connection) -> SessionApp:
            return SockJSStompApp(broker, conn)

        sockjs.add("", options, stomp_app)
        mount(app, node, sockjs, path + "/sockjs")

    listener: list[asyncio.Server] = []

    async def start(app: web.Application) -> None:
        await broker.start()  # persistent queue messages kept from the last run
        if not settings.listen:
            return
        host, port = parse_listen(settings.listen, config.host)
        server = await start_tcp_listener(broker, host, port)
        listener.append(server)
        for sock in server.sockets:
            address = sock.getsockname()
            shown = f"[{address[0]}]" if ":" in address[0] else address[0]
            log.info("stomp listening on %s:%d (STOMP 1.0-1.2 over TCP)", shown, address[1])
        if config.api_key is None:
            log.warning("the STOMP broker is open: any client may publish to any channel")

    async def shutdown(app: web.Application) -> None:
        for server in listener:
            server.close()
        await broker.shutdown("server shutting down")
        if sockjs is not None:
            await sockjs.close(1001, "server shutting down")
        for server in listener:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 5.0)

    app.on_startup.append(start)
    app.on_shutdown.append(shutdown)
    return broker
