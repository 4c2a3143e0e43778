"""The admin dashboard at ``/admin``: its page, its live feed and its API, wired together.

The page (``static/admin.html``, ``admin.js``, ``admin.css``: plain files, no
build step) holds no secret: it asks for ``server.api_key`` in a login form,
keeps it in the tab's ``sessionStorage`` and sends it only in the
``X-API-Key`` header of its API calls and the first message of its feed
(never in a URL). The feed is :mod:`orbiter.http.admin_feed`, the lists and
actions :mod:`orbiter.http.admin_api`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from orbiter.http.admin_api import add_admin_api
from orbiter.http.admin_feed import add_admin_feed
from orbiter.http.metrics import app_sample
from orbiter.node import Node

log = logging.getLogger("orbiter.admin")

ADMIN_PATH = "/admin"
#: The page's own files only; its feed is a WebSocket to this origin.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def add_admin(app: web.Application, node: Node, static_dir: Path) -> None:
    """``/admin`` (the page, unless a live element is mounted there), ``/admin/feed`` and
    ``/api/admin/*``."""
    add_admin_api(app, node)
    add_admin_feed(app, node, lambda: app_sample(app))
    if ADMIN_PATH in node.live.mounts:
        log.warning("a live element is mounted at %s: the admin page is not served", ADMIN_PATH)
        return
    page = (static_dir / "admin.html").read_bytes()

    async def admin_page(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", headers=_HEADERS)

    app.router.add_get(ADMIN_PATH, admin_page)
