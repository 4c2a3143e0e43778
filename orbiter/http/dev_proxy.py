"""The development reverse proxy (the seed's ``[proxy]``): page and push on one origin.

A development tool, not a production front end (use a real proxy, CORS and
``[origins]`` there). With ``dev_proxy.enabled``, every request whose path
is not one of orbiter's own (``/api``, ``/health``, ``/metrics``, ``/admin``, ``/static``,
``/connection``, ``/poll``, ``/tcp``, the SockJS and STOMP prefixes, Orbited 0.3 URLs with ``|``) is
matched against the routes, longest prefix first: ``ORBITED`` means orbiter
answers it; a URL means it is forwarded there with its path and query
unchanged. Bodies stream both ways (nothing is buffered whole), WebSocket
upgrades are relayed message by message, and an app server that cannot be
reached, or that refuses a WebSocket upgrade, is a 502 naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict

from orbiter.config.tcp import ORBITED, DevProxySettings, DevRoute
from orbiter.node import Node

log = logging.getLogger("orbiter.dev_proxy")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Headers that belong to one hop, never forwarded (RFC 9110 7.6.1), plus Host.
_HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Host",
        "Content-Length",
    )
)
_WS_HANDSHAKE = frozenset(
    h.lower()
    for h in (
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Extensions",
        "Sec-WebSocket-Protocol",
        "Sec-WebSocket-Accept",
    )
)
CHUNK = 65_536


def own_prefixes(node: Node) -> tuple[str, ...]:
    config = node.config
    return (
        "/api",
        "/health",  # http/health.py: the node's own, whatever the proxy routes
        "/metrics",  # http/metrics.py
        "/admin",  # http/admin.py: the dashboard and its feed
        "/_",  # Orbited 0.3's /_/orbited.js
        "/static",
        "/connection",
        "/poll",
        "/tcp",
        config.sockjs.prefix,
        config.stomp.websocket_path,
    )


def _under(path: str, prefix: str) -> bool:
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def route_for(path: str, routes: tuple[DevRoute, ...], own: tuple[str, ...]) -> DevRoute | None:
    """The route a path goes to; None (or an ORBITED route) means orbiter answers it."""
    if "|" in path or any(_under(path, prefix) for prefix in own):
        return None
    matching = [route for route in routes if _under(path, route.prefix)]
    return max(matching, key=lambda route: len(route.prefix), default=None)


def _forward_headers(request: web.Request) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        if name.lower() not in _HOP_BY_HOP and name.lower() not in _WS_HANDSHAKE:
            headers.add(name, value)
    headers["X-Forwarded-For"] = request.remote or ""
    headers["X-Forwarded-Host"] = request.host
    headers["X-Forwarded-Proto"] = request.scheme
    return headers


class DevProxy:
    """Forwards requests to app servers through one client session."""

    def __init__(self, settings: DevProxySettings, own: tuple[str, ...]) -> None:
        self.settings = settings
        self.own = own
        self.client: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(force_close=not self.settings.keepalive)
        self.client = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_connect=10),
        )

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = route_for(request.path, self.settings.routes, self.own)
        if route is None or route.to == ORBITED:
            return await handler(request)
        url = route.to + request.rel_url.raw_path_qs
        try:
            if request.headers.get("Upgrade", "").lower() == "websocket":
                return await self._websocket(request, url)
            return await self._http(request, url)
        except aiohttp.ClientConnectionError as exc:
            log.warning("dev proxy: %s %s: %s", request.method, url, exc)
            return web.Response(status=502, text=f"dev proxy: cannot reach {route.to}: {exc}\n")
        except aiohttp.WSServerHandshakeError as exc:  # the app answered, but not with 101
            log.warning("dev proxy: WebSocket %s: the app answered %d", url, exc.status)
            return web.Response(
                status=502,
                text=f"dev proxy: {route.to} refused the WebSocket upgrade (HTTP {exc.status})\n",
            )

    async def _http(self, request: web.Request, url: str) -> web.StreamResponse:
        assert self.client is not None
        body = request.content.iter_chunked(CHUNK) if request.body_exists else None
        headers = _forward_headers(request)
        if request.content_length is not None:
            headers["Content-Length"] = str(request.content_length)
        async with self.client.request(
            request.method, url, headers=headers, data=body, allow_redirects=False
        ) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    response.headers.add(name, value)
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def _websocket(self, request: web.Request, url: str) -> web.StreamResponse:
        assert self.client is not None
        offered = [
            p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p
        ]
        upstream = await self.client.ws_connect(
            url, headers=_forward_headers(request), protocols=offered, autoping=True
        )
        browser = web.WebSocketResponse(
            protocols=(upstream.protocol,) if upstream.protocol else (), autoping=True
        )
        await browser.prepare(request)

        async def pump(
            source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
            sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        ) -> None:
            async for msg in source:
                if msg.type is WSMsgType.TEXT:
                    await sink.send_str(msg.data)
                elif msg.type is WSMsgType.BINARY:
                    await sink.send_bytes(msg.data)
            code = source.close_code or 1000
            with contextlib.suppress(ConnectionError):
                await sink.close(code=code)

        tasks = [
            asyncio.create_task(pump(browser, upstream)),
            asyncio.create_task(pump(upstream, browser)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await upstream.close()
            await browser.close()
        return browser


def add_dev_proxy(app: web.Application, node: Node) -> None:
    """Put the dev proxy in front of every route when ``dev_proxy.enabled``."""
    settings = node.config.dev_proxy
    if not settings.enabled:
        return
    proxy = DevProxy(settings, own_prefixes(node))
    app.middlewares.insert(0, proxy.middleware)

    async def start(app: web.Application) -> None:
        await proxy.start()
        targets = ", ".join(f"{r.prefix} -> {r.to}" for r in settings.routes) or "(no routes)"
        log.warning("dev proxy on (a development tool, not for production): %s", targets)

    async def stop(app: web.Application) -> None:
        await proxy.close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
