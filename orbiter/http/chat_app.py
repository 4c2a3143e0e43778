"""The chat app at ``/``: its page, script, style and icon, served as plain files.

No build step: ``orbiter/static/chat.html``, ``chat.css`` and ``chat.js`` are what the
browser gets. The page is told whether the server needs a connection token (the
``data-auth`` attribute of its ``<html>``), so that with auth on it explains where a
token comes from instead of asking for a nickname (``[auth]`` tokens; with only a
connect hook the page runs as in open mode and the hook decides). Every file is sent with
``Cache-Control: no-cache`` and an ``ETag``: a browser revalidates (a 304 when
nothing changed) and never runs a stale script against a newer server.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from orbiter.node import Node

#: The files, by URL path: (file name, content type).
_ASSETS = {
    "/static/chat.css": ("chat.css", "text/css; charset=utf-8"),
    "/static/chat.js": ("chat.js", "text/javascript; charset=utf-8"),
    "/static/favicon.svg": ("favicon.svg", "image/svg+xml"),
    # Browsers ask for /favicon.ico by themselves; the SVG icon answers it.
    "/favicon.ico": ("favicon.svg", "image/svg+xml"),
}
_AUTH_OFF = b'data-auth="off"'


def _answer(request: web.Request, body: bytes, content_type: str) -> web.Response:
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    headers = {"Cache-Control": "no-cache", "ETag": etag}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers={**headers, "Content-Type": content_type})


def add_chat_app(app: web.Application, node: Node, static_dir: Path, *, page: bool) -> None:
    """Route the chat's files (and, when ``page``, the page itself at ``/``)."""
    auth = b'data-auth="token"' if node.config.auth.enabled else _AUTH_OFF

    async def chat_page(request: web.Request) -> web.Response:
        html = (static_dir / "chat.html").read_bytes().replace(_AUTH_OFF, auth, 1)
        return _answer(request, html, "text/html; charset=utf-8")

    def asset(name: str, content_type: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            return _answer(request, (static_dir / name).read_bytes(), content_type)

        return handler

    if page:
        app.router.add_get("/", chat_page)
    for path, (name, content_type) in _ASSETS.items():
        app.router.add_get(path, asset(name, content_type))
