"""The plain aiohttp broadcast peer: what a hand-written Python push server does.

``/ws?channel=C`` subscribes; ``POST /pub?channel=C`` with a raw body, or a
WebSocket on ``/pub`` sending ``C<TAB>payload`` frames (each answered
``ok``), publishes the payload to every subscriber with ``send_str`` (framed
per subscriber). Run: ``python -m orbiter.bench.peers.aiohttp_broadcast PORT``.
"""

from __future__ import annotations

import sys

from aiohttp import WSMsgType, web

CHANNELS = web.AppKey("channels", dict[str, set[web.WebSocketResponse]])


async def _broadcast(app: web.Application, channel: str, payload: str) -> None:
    """Send to each subscriber in turn, as the aiohttp docs' broadcast example does."""
    for ws in list(app[CHANNELS].get(channel, ())):
        if not ws.closed:
            await ws.send_str(payload)


async def subscribe(request: web.Request) -> web.WebSocketResponse:
    channel = request.query.get("channel", "")
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    subs = request.app[CHANNELS].setdefault(channel, set())
    subs.add(ws)
    try:
        async for _ in ws:
            pass
    finally:
        subs.discard(ws)
    return ws


async def publish_http(request: web.Request) -> web.Response:
    await _broadcast(request.app, request.query.get("channel", ""), await request.text())
    return web.Response(text="ok")


async def publish_ws(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            channel, _, payload = msg.data.partition("\t")
            await _broadcast(request.app, channel, payload)
            await ws.send_str("ok")
    return ws


def build_app() -> web.Application:
    app = web.Application()
    app[CHANNELS] = {}
    app.router.add_get("/ws", subscribe)
    app.router.add_get("/pub", publish_ws)
    app.router.add_post("/pub", publish_http)
    return app


if __name__ == "__main__":
    import uvloop

    uvloop.install()
    web.run_app(build_app(), host="127.0.0.1", port=int(sys.argv[1]), access_log=None)
