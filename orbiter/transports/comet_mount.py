"""Mounts the plain-HTTP push endpoints: SSE, long polling and the Orbited 0.3 URLs.

``GET /connection/sse`` (:mod:`.sse`), ``GET /poll`` (:mod:`.longpoll`) and
``GET /<location>|<user>,<session>,<transport>`` (:mod:`.orbited_legacy`).
The long-poll hub they share starts with the application and, at
shutdown, answers every poll it holds.
"""

from __future__ import annotations

from aiohttp import web

from orbiter.node import Node
from orbiter.services.polls import PollHub
from orbiter.transports.longpoll import POLL_HUB, poll_handler
from orbiter.transports.orbited_legacy import (
    LEGACY_ROUTE,
    LEGACY_STATE,
    LegacyState,
    legacy_handler,
)
from orbiter.transports.sse import sse_handler


def add_comet_routes(app: web.Application, node: Node) -> None:
    hub = app[POLL_HUB] = PollHub(node.pubsub, max_waiting=node.config.poll.max_waiting)
    app[LEGACY_STATE] = LegacyState(node.config.orbited)
    app.router.add_get("/connection/sse", sse_handler, allow_head=False)
    app.router.add_get("/poll", poll_handler, allow_head=False)
    app.router.add_get(LEGACY_ROUTE, legacy_handler, allow_head=False)

    async def start(app: web.Application) -> None:
        await hub.start()

    async def shutdown(app: web.Application) -> None:
        await hub.close()

    app.on_startup.append(start)
    app.on_shutdown.append(shutdown)
