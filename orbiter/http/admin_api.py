"""``/api/admin/*``: what the dashboard (``/admin``) lists and does, for administrators.

- ``GET /api/admin/connections``: the connections of every node (client,
  user, transport, IP, age, bytes queued, channels, the node holding it), the
  longest-open first, at most :data:`MAX_CONNECTIONS`; on a clustered engine
  each node sends its own longest-open (``api_cluster.every_share``);
- ``GET /api/admin/channels``: channels with subscribers (on every node), the
  most subscribed first, each with its stream's offset (the dashboard's rate is
  its change) and history size;
- ``POST /api/admin/disconnect`` ``{"client", "reconnect"?}``: close a
  connection (3503, or 1001 with ``reconnect``: come back elsewhere);
- ``POST /api/admin/unsubscribe`` ``{"user", "channel"}``: take a user's
  connections off a channel (each is told, with an ``unsubscribed`` push).

On a clustered engine the two actions reach every node, so the one that
holds the connection acts (the engine's survey). Every route needs
``server.api_key``, and is refused (403) while none is set: without a key the
dashboard's powers would be anyone's.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from orbiter.http.api import ApiError, check_api_key, check_post, expect_body, json_body
from orbiter.http.api_cluster import every_share
from orbiter.http.metrics import NODE_NAME
from orbiter.model import JSON
from orbiter.protocol.native import DisconnectCode, validate_channel
from orbiter.transports.app_keys import NODE
from orbiter.transports.errors import json_response
from orbiter.transports.stomp_mount import STOMP_BROKER

if TYPE_CHECKING:
    from orbiter.node import Node
    from orbiter.services.stomp.broker import StompBroker

ADMIN_API = "/api/admin"
#: At most this many rows in a list.
MAX_CONNECTIONS = 1000
MAX_CHANNELS = 200
#: Why an administrator's action happened, as clients are told.
ADMIN_REASON = "disconnected by an administrator"
UNSUBSCRIBE_REASON = "unsubscribed by an administrator"
#: What the admin routes answer while ``server.api_key`` is unset.
NO_KEY = "the admin routes need server.api_key; they are off while the API runs open"


def check_admin(node: Node, x_api_key: str | None, authorization: str | None) -> None:
    """Raise :class:`ApiError` (403 without a configured key, 401 without the right one)."""
    if node.config.api_key is None:
        raise ApiError(403, NO_KEY)
    check_api_key(node, x_api_key, authorization)


def _admin(request: web.Request) -> Node:
    node = request.app[NODE]
    headers = request.headers
    check_admin(node, headers.get("X-API-Key"), headers.get("Authorization"))
    return node


def _stomp(app: web.Application) -> StompBroker | None:
    return app.get(STOMP_BROKER)


def _connections_here(node: Node, stomp: StompBroker | None) -> dict[str, Any]:
    """``{total, rows}``: how many connections this node holds, and the longest-open
    :data:`MAX_CONNECTIONS` of them as rows (its answer to other nodes' surveys too)."""
    now = time.monotonic()
    rows: list[dict[str, Any]] = []
    for session in node.sessions:
        opened = node.opened_at(session)
        rows.append(
            {
                "client": session.client_id,
                "user": session.user,
                "transport": session.credentials.transport,
                "ip": session.peer,
                "age": None if opened is None else round(now - opened, 1),
                "buffer": session.outbox.queued_bytes,
                "channels": len(session.channels),
                "node": NODE_NAME,
            }
        )
    for stomp_session in () if stomp is None else stomp.sessions:
        identity = stomp_session.identity
        rows.append(
            {
                "client": stomp_session.client_id,
                "user": None if identity is None else identity.user,
                "transport": f"stomp-{stomp_session.transport}",
                "ip": stomp_session.peer,
                "age": round(now - stomp_session.started, 1),
                "buffer": stomp_session.outbox.queued_bytes,
                "channels": None,
                "node": NODE_NAME,
            }
        )
    _longest_open_first(rows)
    return {"total": len(rows), "rows": rows[:MAX_CONNECTIONS]}


def _longest_open_first(rows: list[dict[str, Any]]) -> None:
    rows.sort(key=lambda row: -(row["age"] or 0))


async def connections(request: web.Request) -> web.Response:
    node = _admin(request)
    here = _connections_here(node, _stomp(request.app))
    nodes, shares = await every_share(node, "admin_connections", here)
    rows: list[dict[str, Any]] = []
    total = answered = 0
    for share in shares:
        if not isinstance(share, dict) or not isinstance(share.get("rows"), list):
            continue
        answered += 1
        total += int(share.get("total") or 0)
        rows += (row for row in share["rows"][:MAX_CONNECTIONS] if isinstance(row, dict))
    _longest_open_first(rows)
    return json_response(
        {
            "node": NODE_NAME,
            "nodes": nodes,
            "answered": answered,
            "total": total,
            "connections": rows[:MAX_CONNECTIONS],
        }
    )


async def channels(request: web.Request) -> web.Response:
    node = _admin(request)
    pubsub = node.pubsub
    counts = await pubsub.channels()
    top = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:MAX_CHANNELS]
    pages = await asyncio.gather(*(pubsub.history(name, None, 0) for name, _ in top))
    rows = [
        {
            "channel": name,
            "subscribers": count,
            "offset": page.position.offset,
            "epoch": page.position.epoch,
            "history_size": pubsub.policy(name).size,
        }
        for (name, count), page in zip(top, pages, strict=True)
    ]
    return json_response({"total": len(counts), "channels": rows, "time": time.time()})


def _disconnect_here(node: Node, stomp: StompBroker | None, client: str, reconnect: bool) -> int:
    """Close the connection ``client`` if it is on this node: 1, else 0."""
    for session in node.sessions:
        if session.client_id == client:
            code = DisconnectCode.SHUTDOWN if reconnect else DisconnectCode.FORBIDDEN
            session.close(code, ADMIN_REASON)
            return 1
    for stomp_session in () if stomp is None else stomp.sessions:
        if stomp_session.client_id == client:
            stomp_session.fail(ADMIN_REASON)
            return 1
    return 0


def _unsubscribe_here(
    node: Node, user: str, channel: str, tasks: set[asyncio.Task[bool]]
) -> list[asyncio.Task[bool]]:
    """Start taking ``user``'s connections on this node off ``channel`` (each a task, kept
    in ``tasks`` until done)."""
    found = [s for s in node.sessions if s.user == user and channel in s.channels]
    started = []
    for session in found:
        task = asyncio.ensure_future(session.drop(channel, UNSUBSCRIBE_REASON))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        started.append(task)
    return started


_TASKS = web.AppKey("admin_tasks", set[asyncio.Task[bool]])


async def _everywhere(node: Node, kind: str, here: int, argument: JSON) -> int:
    """``here`` plus what the other nodes answer to a survey of ``kind`` (on a cluster)."""
    _, answers = await every_share(node, kind, here, argument)
    return sum(answer for answer in answers if isinstance(answer, int))


async def disconnect(request: web.Request) -> web.Response:
    node = _admin(request)
    check_post(request)
    body = await json_body(request)
    client, reconnect = body.get("client"), body.get("reconnect", False)
    if not isinstance(client, str) or not client:
        raise ApiError(400, "'client' must be a connection's client id (a non-empty string)")
    if not isinstance(reconnect, bool):
        raise ApiError(400, "'reconnect' must be true or false")
    here = _disconnect_here(node, _stomp(request.app), client, reconnect)
    found = here or await _everywhere(
        node, "admin_disconnect", 0, {"client": client, "reconnect": reconnect}
    )
    if not found:
        raise ApiError(404, f"no connection {client!r} on any node")
    return json_response({"disconnected": found})


async def unsubscribe(request: web.Request) -> web.Response:
    node = _admin(request)
    check_post(request)
    body = await json_body(request)
    user = body.get("user")
    if not isinstance(user, str) or not user:
        raise ApiError(400, "'user' must be a non-empty string")
    try:
        channel = validate_channel(body.get("channel"))
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    started = _unsubscribe_here(node, user, channel, request.app[_TASKS])
    here = sum(await asyncio.gather(*started))
    found = await _everywhere(node, "admin_unsubscribe", here, {"user": user, "channel": channel})
    if not found:
        raise ApiError(404, f"user {user!r} has no connection subscribed to {channel!r}")
    return json_response({"unsubscribed": found})


def add_admin_api(app: web.Application, node: Node) -> None:
    """The four routes, and this node's answers to other nodes' admin lists and actions."""
    tasks = app[_TASKS] = set()

    def disconnect_answer(argument: JSON) -> JSON:
        if not isinstance(argument, dict):
            return 0
        client, reconnect = str(argument.get("client")), bool(argument.get("reconnect"))
        return _disconnect_here(node, _stomp(app), client, reconnect)

    def unsubscribe_answer(argument: JSON) -> JSON:
        if not isinstance(argument, dict):
            return 0
        user, channel = str(argument.get("user")), str(argument.get("channel"))
        return len(_unsubscribe_here(node, user, channel, tasks))

    node.broker.set_answerer("admin_connections", lambda _: _connections_here(node, _stomp(app)))
    node.broker.set_answerer("admin_disconnect", disconnect_answer)
    node.broker.set_answerer("admin_unsubscribe", unsubscribe_answer)
    app.router.add_get(ADMIN_API + "/connections", connections)
    app.router.add_get(ADMIN_API + "/channels", channels)
    app.router.add_post(ADMIN_API + "/disconnect", disconnect, expect_handler=expect_body)
    app.router.add_post(ADMIN_API + "/unsubscribe", unsubscribe, expect_handler=expect_body)
