"""``POST /api/wall``: a server-wide notice, shown on every chat page (``/``).

Body ``{"text": "..."}`` (1 to 2,000 characters); published as ``{"text"}`` to the
channel ``orbiter:wall``, which every chat page subscribes to. Browsers cannot
publish there under the default rules (it matches no ``[[channel]]`` rule, and
``channel_defaults`` keeps ``client_publish = false``), so only the app server and
``orbiter wall`` write on it. Behind the API key like every route of ``/api``.
"""

from __future__ import annotations

from aiohttp import web

from orbiter.engine.base import PublishFailed
from orbiter.http.api import ApiError, check_post, expect_body, json_body
from orbiter.transports.app_keys import NODE
from orbiter.transports.errors import json_response

#: The channel of the wall (orbiter/static/chat.js subscribes to it).
WALL_CHANNEL = "orbiter:wall"
#: The longest wall text, in characters.
MAX_WALL_TEXT = 2000


async def wall(request: web.Request) -> web.Response:
    check_post(request)
    text = (await json_body(request)).get("text")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "'text' must be a non-empty string")
    if len(text) > MAX_WALL_TEXT:
        raise ApiError(400, f"'text' is longer than {MAX_WALL_TEXT} characters")
    try:
        pub = await request.app[NODE].pubsub.publish(WALL_CHANNEL, {"text": text})
    except PublishFailed as exc:  # a full disk
        raise ApiError(503, str(exc)) from None
    return json_response({"channel": WALL_CHANNEL, "offset": pub.offset, "epoch": pub.epoch})


def add_wall_route(app: web.Application) -> None:
    app.router.add_post("/api/wall", wall, expect_handler=expect_body)
