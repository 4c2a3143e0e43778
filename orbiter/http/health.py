"""``/health/live`` and ``/health/ready``: for load balancers, orchestrators and ``orbiter status``.

``GET /health/live`` answers 200 while the process serves HTTP at all
(restart it if not). ``GET /health/ready`` answers 200 when the node can do
its work: every listener started (the start-up hooks, the STOMP and
pyorbited ports among them, completed and shutdown has not begun) and the
engine answers (:meth:`Broker.check`: Redis connected and answering PING,
the SQLite writer thread running and through its queue); else 503 with the
reason (send traffic elsewhere). Neither needs the API key, and neither
names a secret. Both answer JSON: ``{"status": ..., "checks": {...}}``.
"""

from __future__ import annotations

import time

from aiohttp import web

from orbiter.transports.app_keys import NODE
from orbiter.transports.errors import json_response
from orbiter.version import __version__

HEALTH_PREFIX = "/health"


class _Listeners:
    """Where the application's listeners are: "starting", "ok" or "shutting down"."""

    __slots__ = ("since", "state")

    def __init__(self) -> None:
        self.state = "starting"
        self.since = time.monotonic()


_LISTENERS = web.AppKey("health_listeners", _Listeners)


async def live(request: web.Request) -> web.Response:
    """200: the process is up and serving HTTP."""
    return json_response({"status": "ok", "version": __version__})


async def ready(request: web.Request) -> web.Response:
    """200 when listeners are up and the engine answers; else 503 naming the reason."""
    app = request.app
    node = app[NODE]
    listeners = app[_LISTENERS].state
    engine = await node.broker.check() if listeners == "ok" else None
    checks = {"listeners": listeners, "engine": engine or "ok"}
    reasons = [
        f"{name}: {state}"
        for name, state in (("listeners", listeners), ("engine", engine))
        if state not in ("ok", None)
    ]
    body: dict[str, object] = {
        "status": "not ready" if reasons else "ready",
        "checks": checks,
        "engine": node.config.engine.kind,
        "version": __version__,
        "uptime": round(time.monotonic() - app[_LISTENERS].since, 3),
    }
    if reasons:
        body["reason"] = "; ".join(reasons)
    return json_response(body, status=503 if reasons else 200)


def add_health_routes(app: web.Application) -> None:
    """Mount the two routes; call it after every other start-up hook is added, so that
    readiness follows them."""
    listeners = app[_LISTENERS] = _Listeners()

    async def started(app: web.Application) -> None:
        listeners.state = "ok"
        listeners.since = time.monotonic()

    async def stopping(app: web.Application) -> None:
        listeners.state = "shutting down"

    app.on_startup.append(started)
    app.on_shutdown.insert(0, stopping)
    app.router.add_get(HEALTH_PREFIX + "/live", live)
    app.router.add_get(HEALTH_PREFIX + "/ready", ready)
