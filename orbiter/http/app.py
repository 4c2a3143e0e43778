"""Builds the aiohttp application of a node: routes, limits, start-up and shutdown."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from orbiter.http import api
from orbiter.http.admin import add_admin
from orbiter.http.api_calls import add_call_route
from orbiter.http.api_wall import add_wall_route
from orbiter.http.chat_app import add_chat_app
from orbiter.http.dev_proxy import add_dev_proxy
from orbiter.http.fast_publish import fast_publish_router
from orbiter.http.front import front
from orbiter.http.health import add_health_routes
from orbiter.http.live_pages import add_live_pages
from orbiter.http.metrics import add_metrics_route
from orbiter.http.openapi import add_openapi_route
from orbiter.http.origin_guard import add_cors_headers, origin_guard
from orbiter.http.seed_scripts import add_seed_scripts
from orbiter.node import Node
from orbiter.services.tcp_proxy import TcpProxy
from orbiter.transports.app_keys import NODE, RAW_ROUTERS
from orbiter.transports.comet_mount import add_comet_routes
from orbiter.transports.pyorbited_listener import add_pyorbited_listener
from orbiter.transports.sockjs.mount import add_sockjs_routes
from orbiter.transports.stomp_mount import add_stomp
from orbiter.transports.tcp_websocket import add_tcp_routes
from orbiter.transports.websocket import add_native_websocket

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def build_app(node: Node) -> web.Application:
    limits = node.config.limits
    app = web.Application(
        client_max_size=limits.max_http_body,
        # Bodies must keep arriving and end in time (limits.body_timeout, body_deadline); a
        # client gone mid-request is one line (http/front.py). Request heads are timed in
        # transports/sniffing.py and by aiohttp's keepalive_timeout (server.py).
        middlewares=[
            front(limits.body_timeout, limits.body_deadline),
            api.api_errors,
            origin_guard,
        ],
    )
    app[NODE] = node
    app[RAW_ROUTERS] = []
    # Origin checks and CORS for every push route (http/origin_guard.py).
    app.on_response_prepare.append(add_cors_headers)
    # /connection/websocket: taken from aiohttp after the handshake (transports/websocket.py).
    add_native_websocket(app, node)
    # The browser TCP proxy (/tcp, /tcp/host:port); deny by default ([tcp] access rules).
    add_tcp_routes(app, TcpProxy(node.config.tcp))
    # SSE, long polling, Orbited 0.3 URLs; held polls are answered first at shutdown.
    add_comet_routes(app, node)
    api.add_routes(app)
    add_call_route(app)  # POST /api/call: widget methods of live elements (http/api_calls.py)
    add_openapi_route(app)  # GET /api/openapi.json: the API's description (http/openapi.py)
    add_wall_route(app)  # POST /api/wall: a notice on every chat page (http/api_wall.py)
    add_metrics_route(app, node)  # GET /metrics, Prometheus' text format (http/metrics.py)
    add_admin(app, node, STATIC_DIR)  # /admin, its feed, /api/admin/* (http/admin.py)
    # Keep-alive POST /api/publish connections are served below aiohttp (http/fast_publish.py).
    app[RAW_ROUTERS].append(fast_publish_router(node))
    # Live element pages ([[live.element]], serve --element); the chat app unless one is at /.
    add_live_pages(app, node.live)
    add_chat_app(app, node, STATIC_DIR, page="/" not in node.live.mounts)
    # The Orbited 0.3/0.7 script URLs of the seeds' pages (/_/orbited.js, /static/Orbited.js).
    add_seed_scripts(app, STATIC_DIR)
    app.router.add_static("/static", STATIC_DIR)

    async def start(app: web.Application) -> None:
        await node.start()

    async def shutdown(app: web.Application) -> None:
        await node.shutdown()

    async def cleanup(app: web.Application) -> None:
        await node.close()

    app.on_startup.append(start)
    app.on_shutdown.append(shutdown)
    app.on_cleanup.append(cleanup)
    # After the node's shutdown hook, so native SockJS sessions close with the node's reason.
    add_sockjs_routes(app, node)
    # The STOMP broker: /stomp (WebSocket), /stomp/sockjs, and the stomp.listen TCP port.
    add_stomp(app, node)
    # pyorbited's Orbit 1.0 event port ([pyorbited], the INI's orbit://), when enabled.
    add_pyorbited_listener(app, node)
    # The development reverse proxy ([dev_proxy], the INI's [proxy]), when enabled.
    add_dev_proxy(app, node)
    # /health/live and /health/ready (http/health.py): last, so ready follows every start-up.
    add_health_routes(app)
    return app
