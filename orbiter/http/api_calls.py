"""``POST /api/call``: the app server calls a method on browser widgets of this node.

Body ``{"method", "args"?, "user" | "key" | "channel", "mount"?, "wait"?,
"timeout"?}``: exactly one of ``user`` (its connections), ``key`` (an Orbited
key's), ``channel`` (its subscribers') picks the connections; ``mount``
narrows to widgets of one ``[[live.element]]``, or alone picks every widget
of that mount (a wall). Fire-and-forget answers
``{"calls": n}``; ``"wait": true`` answers ``{"results": [{client, element,
mount, value | error}]}`` once every call is answered or has timed out
(``timeout`` seconds, default ``live.call_timeout``, at most 60). Behind the
API key like every route of ``/api``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from orbiter.http.api import ApiError, check_post, expect_body, json_body
from orbiter.node import Node
from orbiter.protocol.keys import ConnectionKey, InvalidKey
from orbiter.protocol.live import MAX_NAME, NotJSON
from orbiter.services.live.connection import LiveConnection
from orbiter.services.live.fanout import call_widgets
from orbiter.session.session import ClientSession
from orbiter.transports.app_keys import NODE
from orbiter.transports.errors import json_response

#: The longest ``timeout`` a waiting call may ask for, in seconds.
MAX_TIMEOUT = 60.0


async def call(request: web.Request) -> web.Response:
    check_post(request)
    node = request.app[NODE]
    body = await json_body(request)
    method = body.get("method")
    if not isinstance(method, str) or not 0 < len(method) <= MAX_NAME:
        raise ApiError(400, f"'method' must be a string of 1 to {MAX_NAME} characters")
    args = body.get("args", [])
    if not isinstance(args, list):
        raise ApiError(400, "'args' must be an array")
    mount = body.get("mount")
    if mount is not None and not isinstance(mount, str):
        raise ApiError(400, "'mount' must be a string")
    wait = body.get("wait", False)
    if not isinstance(wait, bool):
        raise ApiError(400, "'wait' must be true or false")
    timeout = body.get("timeout", node.config.live.call_timeout)
    if type(timeout) not in (int, float) or not 0 < timeout <= MAX_TIMEOUT:
        raise ApiError(400, "'timeout' must be a number of seconds, above 0 and at most 60")
    connections = _chosen(node, body, mount)
    try:
        answer = await call_widgets(
            connections, method, tuple(args), mount=mount, timeout=float(timeout), wait=wait
        )
    except NotJSON as exc:  # pragma: no cover - arguments parsed from JSON are JSON
        raise ApiError(400, str(exc)) from None
    return json_response(answer)


def _chosen(node: Node, body: dict[str, Any], mount: str | None) -> list[LiveConnection]:
    named = [name for name in ("user", "key", "channel") if name in body]
    if not named and mount is not None:  # every widget of the mount
        return [s.live for s in node.sessions if s.live is not None and not s.closed]
    if len(named) != 1:
        raise ApiError(
            400, "name exactly one of 'user', 'key', 'channel' (or only 'mount': all its widgets)"
        )
    [name] = named
    value = body[name]
    if not isinstance(value, str) or not value:
        raise ApiError(400, f"'{name}' must be a non-empty string")
    if name == "key":
        try:
            key = ConnectionKey.parse(value)
        except InvalidKey as exc:
            raise ApiError(400, str(exc)) from None

        def picked(s: ClientSession) -> bool:
            return s.key == key

    elif name == "user":

        def picked(s: ClientSession) -> bool:
            return s.user == value

    else:

        def picked(s: ClientSession) -> bool:
            return value in s.channels

    return [s.live for s in node.sessions if s.live is not None and not s.closed and picked(s)]


def add_call_route(app: web.Application) -> None:
    app.router.add_post("/api/call", call, expect_handler=expect_body)
