"""Mounts SockJS on the aiohttp application: the native service at the prefix,
and the protocol suite's test services under it when configured.

With ``sockjs.test_services`` on, ``<prefix>/echo``, ``<prefix>/close``,
``<prefix>/disabled_websocket_echo`` and ``<prefix>/cookie_needed_echo``
behave as the SockJS protocol suite expects (streaming responses end after
4096 bytes, as in sockjs-node's test server), so ``SOCKJS_URL`` is
``http://host:port<prefix>``.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from aiohttp import web

from orbiter.node import Node
from orbiter.protocol.native import DisconnectCode
from orbiter.transports.app_keys import RAW_ROUTERS
from orbiter.transports.sockjs.endpoint import (
    Connection,
    EndpointOptions,
    SessionApp,
    SockJSServer,
)
from orbiter.transports.sockjs.handlers import SockJSHandler
from orbiter.transports.sockjs.hixie76 import hixie76_router
from orbiter.transports.sockjs.remote import RemoteSessions
from orbiter.transports.sockjs.services import CloseApp, EchoApp, NativeApp

log = logging.getLogger("orbiter.sockjs")

#: The response limit the protocol suite expects of its test services.
TEST_RESPONSE_LIMIT = 4096


def endpoint_options(node: Node) -> EndpointOptions:
    """The options of every SockJS endpoint (native, STOMP, TCP) of ``node``."""
    config = node.config
    settings = config.sockjs
    return EndpointOptions(
        heartbeat=settings.heartbeat,
        disconnect_delay=settings.disconnect_delay,
        response_limit=settings.response_limit,
        max_message_size=config.limits.max_message_size,
        max_body=config.limits.max_http_body,
        max_queued_bytes=config.limits.outgoing_buffer,
        frame_rate=config.limits.frame_rate,
        client_url=settings.client_url,
        counters=node.counters,
    )


def build_server(node: Node) -> SockJSServer:
    """The SockJS endpoints that ``node``'s configuration asks for."""
    settings = node.config.sockjs
    options = endpoint_options(node)
    server = SockJSServer()

    def native(conn: Connection) -> SessionApp:
        return NativeApp(node, conn)

    server.add("", options, native)
    if settings.test_services:
        test = replace(options, response_limit=TEST_RESPONSE_LIMIT)
        server.add("echo", test, EchoApp)
        server.add("close", test, CloseApp)
        server.add("disabled_websocket_echo", replace(test, websocket=False), EchoApp)
        server.add("cookie_needed_echo", replace(test, cookie_needed=True), EchoApp)
    return server


def mount(
    app: web.Application,
    node: Node,
    server: SockJSServer,
    prefix: str,
) -> SockJSHandler:
    """Route ``prefix`` and everything under it to ``server``'s endpoints, hixie-76 included.

    Every SockJS mount (native, STOMP, TCP) goes through here; closing its
    sessions at shutdown is the caller's, whose order matters to it.
    """
    handler = SockJSHandler(server, prefix)
    directory = node.session_directory
    if directory is not None:  # sessions of other nodes are reached through Redis
        for name, endpoint in server.endpoints.items():
            handler.remote[name] = RemoteSessions(endpoint, directory, f"{prefix}/{name}")
    # The bound coroutine method, not the object: aiohttp wraps (and warns about)
    # a handler it does not see as a coroutine function, one more call per request.
    # Its expect handler judges a body's declared length before asking for the body.
    app.router.add_route("*", prefix, handler.__call__, expect_handler=handler.expect)
    app.router.add_route(
        "*", prefix + "/{tail:.*}", handler.__call__, expect_handler=handler.expect
    )
    app[RAW_ROUTERS].append(hixie76_router(handler, node))
    return handler


def add_sockjs_routes(app: web.Application, node: Node) -> None:
    """Route everything under the prefix to SockJS; close its sessions on shutdown.

    Call this after the node's own shutdown hook is registered: native
    sessions are closed by the node (code 1001), this closes the rest.
    """
    prefix = node.config.sockjs.prefix
    server = build_server(node)
    mount(app, node, server, prefix)
    if node.config.sockjs.test_services:
        names = ", ".join(f"{prefix}/{name}" for name in server.endpoints if name)
        log.warning("SockJS test services mounted: %s", names)

    async def shutdown(app: web.Application) -> None:
        await server.close(int(DisconnectCode.SHUTDOWN), "server shutting down")
        if node.session_directory is not None:
            await node.session_directory.close()

    app.on_shutdown.append(shutdown)
