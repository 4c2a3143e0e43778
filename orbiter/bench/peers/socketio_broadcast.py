"""The python-socketio 5 peer: an ``AsyncServer`` on aiohttp, as its documentation shows it.

A client connects to ``/socket.io/?EIO=4&transport=websocket&channel=C``
(Engine.IO v4 over WebSocket) and, in the ``connect`` handler, joins the
room ``C`` (so it is in the room before the server answers the namespace
connect with ``40{...}``). ``POST /pub?channel=C`` emits its raw body as a
``message`` event to the room (``42["message","<body>"]`` to each member).
Needs python-socketio (the ``bench`` extra). Run: ``python -m
orbiter.bench.peers.socketio_broadcast PORT [PING_INTERVAL]`` (seconds,
default python-socketio's 25; the tests make it short to see pings answered).
"""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import parse_qs

import socketio
from aiohttp import web


def build_app(ping_interval: float = 25.0) -> web.Application:
    sio = socketio.AsyncServer(
        async_mode="aiohttp", ping_interval=ping_interval, ping_timeout=min(20.0, ping_interval)
    )
    app = web.Application()
    sio.attach(app)

    async def connect(sid: str, environ: dict[str, Any], auth: object = None) -> None:
        channel = parse_qs(environ.get("QUERY_STRING", "")).get("channel", [""])[0]
        await sio.enter_room(sid, channel)

    sio.on("connect", connect)

    async def publish(request: web.Request) -> web.Response:
        await sio.emit("message", await request.text(), room=request.query.get("channel", ""))
        return web.Response(text="ok")

    app.router.add_post("/pub", publish)
    return app


if __name__ == "__main__":
    import uvloop

    uvloop.install()
    interval = float(sys.argv[2]) if len(sys.argv) > 2 else 25.0
    web.run_app(build_app(interval), host="127.0.0.1", port=int(sys.argv[1]), access_log=None)
