"""The HTTP API for app servers: publish, Orbited event, channels, history, presence.

Every answer is JSON. Every failure is ``{"error": {"status", "message"}}``
with a 4xx status naming the problem (5xx only for orbiter's own faults).
When ``api_key`` is configured, each call must carry it in ``X-API-Key`` or
``Authorization: apikey <key>``; without it the answer is 401 and nothing
happens. Without one, a POST must say ``Content-Type: application/json``
(else 415): a page elsewhere can send a cross-site ``text/plain`` POST with
no preflight, but not a JSON one, nor a key header. A POST that asks
``Expect: 100-continue`` is judged on its head first (key, type, declared
length) and refused before its body is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from orbiter.engine.base import PublishFailed
from orbiter.http.api_cluster import cluster_section

# The rules aiohttp's handlers share with the fast path, compiled; the API's other
# modules import ApiError, check_api_key and MAX_BATCH from here.
from orbiter.http.api_rules import MAX_BATCH as MAX_BATCH
from orbiter.http.api_rules import ApiError as ApiError
from orbiter.http.api_rules import _json_object, answer_of, publish_body
from orbiter.http.api_rules import check_api_key as check_api_key
from orbiter.model import StreamPosition
from orbiter.protocol.keys import ConnectionKey, InvalidKey
from orbiter.protocol.native import publication_fields, validate_channel
from orbiter.transports.app_keys import NODE
from orbiter.transports.errors import error_response, json_response
from orbiter.transports.expect import expect_handler

if TYPE_CHECKING:
    from orbiter.node import Node

log = logging.getLogger("orbiter.api")

MAX_EVENT_KEYS = 10_000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def api_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure under ``/api/`` into a JSON error naming the problem."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as exc:
        return _refused(request, exc)
    except web.HTTPRequestEntityTooLarge:
        return _refused(request, _body_too_large(request.app[NODE]))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason)


def _refused(request: web.Request, exc: ApiError) -> web.Response:
    """The JSON answer to a refused call, logged."""
    return error_response(*refusal_answer(exc, request.method, request.path, request.remote))


def refusal_answer(exc: ApiError, method: str, path: str, peer: str | None) -> tuple[int, str]:
    """What :func:`api_errors` (and the publish fast path) answers a refused call, logged:
    its status and the JSON error's message."""
    log.info("%s %s from %s: %d %s", method, path[:200], peer, exc.status, exc.message)
    return exc.status, exc.message


def _body_too_large(node: Node) -> ApiError:
    node.counters["limit_http_body"] += 1
    limit = node.config.limits.max_http_body
    return ApiError(
        413, f"request body is larger than the limit of {limit} bytes (limits.max_http_body)"
    )


def _check_api_key(request: web.Request) -> None:
    headers = request.headers
    check_api_key(request.app[NODE], headers.get("X-API-Key"), headers.get("Authorization"))


def is_json_type(content_type: str | None) -> bool:
    """Is ``content_type`` (a ``Content-Type`` value) ``application/json``, parameters aside?"""
    if content_type is None:
        return False
    media_type = content_type.partition(";")[0].strip(" \t")
    return media_type.lower() == "application/json"


def json_type_refusal(node: Node, content_type: str | None) -> str | None:
    """Why a POST of ``content_type`` is refused (415), or None.

    When the API needs no key (see above), a POST must say it is JSON.
    """
    if node.config.api_key is not None or is_json_type(content_type):
        return None
    shown = "none" if content_type is None else repr(content_type[:100])
    return (
        f"send the body as JSON with 'Content-Type: application/json' (got {shown}); "
        "without server.api_key the API takes no other type"
    )


def check_post(request: web.Request) -> None:
    """What a POST's head must pass: its API key, its type, its declared length."""
    _check_api_key(request)
    node = request.app[NODE]
    refusal = json_type_refusal(node, request.headers.get("Content-Type"))
    if refusal is not None:
        raise ApiError(415, refusal)
    length = request.content_length
    if length is not None and length > node.config.limits.max_http_body:
        raise _body_too_large(node)


def _judge_post(request: web.Request) -> web.StreamResponse | None:
    """A POST's head, for ``Expect: 100-continue``: its refusal, or None to take the body."""
    try:
        check_post(request)
    except ApiError as exc:
        return _refused(request, exc)
    return None


def _unknown_expect(request: web.Request, message: str) -> web.StreamResponse:
    return _refused(request, ApiError(417, message))


#: ``Expect: 100-continue`` on a POST: refused before the body is sent, else asked for.
expect_body = expect_handler(_judge_post, _unknown_expect)


async def json_body(request: web.Request) -> dict[str, Any]:
    """A POST's body, which must be a JSON object (``ApiError`` 400 saying why if not)."""
    return _json_object(await request.read())


def _channel(value: object) -> str:
    try:
        return validate_channel(value)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


def _keys(value: object) -> list[ConnectionKey]:
    """The keys of an event; none is a success reaching no one, as pyorbited's was (a chat
    app sends each line to everyone joined: nobody yet is a list of none)."""
    raw = [value] if isinstance(value, str) else value
    if not isinstance(raw, list):
        raise ApiError(400, "'keys' must be a key string or a list of key strings")
    if len(raw) > MAX_EVENT_KEYS:
        raise ApiError(400, f"'keys' holds more than {MAX_EVENT_KEYS} keys")
    try:
        return [ConnectionKey.parse(k) for k in raw]
    except InvalidKey as exc:
        raise ApiError(400, str(exc)) from None


def _int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"query parameter '{name}' must be an integer") from None
    if value < 0:
        raise ApiError(400, f"query parameter '{name}' must not be negative")
    return value


async def publish(request: web.Request) -> web.Response:
    check_post(request)
    answer = publish_body(request.app[NODE].pubsub, await request.read())
    if isinstance(answer, dict):
        return json_response(answer)
    try:
        return json_response(answer_of(await answer))
    except PublishFailed as exc:
        raise ApiError(503, str(exc)) from None


async def event(request: web.Request) -> web.Response:
    check_post(request)
    body = await json_body(request)
    keys = _keys(body.get("keys"))
    if "data" not in body:
        raise ApiError(400, "'data' is missing")
    try:
        pubs = await request.app[NODE].pubsub.event(keys, body["data"])
    except PublishFailed as exc:  # a full disk: the keys before it were published
        raise ApiError(503, str(exc)) from None
    return json_response(
        {
            "results": [
                {"key": str(key), "offset": pub.offset, "epoch": pub.epoch}
                for key, pub in zip(keys, pubs, strict=True)
            ]
        }
    )


async def channels(request: web.Request) -> web.Response:
    _check_api_key(request)
    counts = await request.app[NODE].pubsub.channels()
    return json_response({"channels": counts})


async def presence(request: web.Request) -> web.Response:
    _check_api_key(request)
    channel = _channel(request.query.get("channel"))
    return json_response(await request.app[NODE].pubsub.presence(channel))


async def history(request: web.Request) -> web.Response:
    _check_api_key(request)
    channel = _channel(request.query.get("channel"))
    limit = _int_param(request, "limit")
    since_offset = _int_param(request, "since")
    before = _int_param(request, "before")
    pubsub = request.app[NODE].pubsub
    since = None
    if since_offset is not None:
        epoch = request.query.get("epoch")
        if not epoch:
            raise ApiError(400, "query parameter 'since' needs 'epoch' as well")
        since = StreamPosition(since_offset, epoch)
    if before is not None:
        if since is not None:
            raise ApiError(400, "query parameters 'since' and 'before' do not go together")
        size = pubsub.policy(channel).size
        page = await pubsub.history_before(channel, before, size if limit is None else limit)
    else:
        page = await pubsub.history(channel, since, limit)
    return json_response(
        {
            "channel": channel,
            "epoch": page.position.epoch,
            "offset": page.position.offset,
            "recoverable": page.recoverable,
            "publications": [publication_fields(p) for p in page.publications],
        }
    )


async def stats(request: web.Request) -> web.Response:
    """Counters of limit violations and refusals, and what is open now."""
    _check_api_key(request)
    node = request.app[NODE]
    return json_response(
        {
            "connections": node.connection_count,  # native sessions and STOMP
            "subscribed_channels": node.pubsub.channel_count,  # with a subscriber here
            **node.broker.stats(),  # channels (streams stored), history_bytes
            "counters": dict(sorted(node.counters.items())),
            **await cluster_section(node),  # every node's share, on Redis
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/stats", stats)
    app.router.add_post("/api/publish", publish, expect_handler=expect_body)
    app.router.add_post("/api/event", event, expect_handler=expect_body)
    app.router.add_get("/api/channels", channels)
    app.router.add_get("/api/history", history)
    app.router.add_get("/api/presence", presence)
