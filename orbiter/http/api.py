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

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from orbiter.engine.base import PublishFailed
from orbiter.http.api_cluster import cluster_section
from orbiter.model import JSON, Publication, StreamPosition
from orbiter.protocol.keys import ConnectionKey, InvalidKey
from orbiter.protocol.native import publication_fields, validate_channel, validate_tags
from orbiter.transports.app_keys import NODE
from orbiter.transports.errors import error_response, json_response
from orbiter.transports.expect import expect_handler

if TYPE_CHECKING:
    from orbiter.node import Node
    from orbiter.services.pubsub import PubSub

log = logging.getLogger("orbiter.api")

MAX_EVENT_KEYS = 10_000
MAX_BATCH = 10_000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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


def check_api_key(node: Node, x_api_key: str | None, authorization: str | None) -> None:
    """Raise 401 unless the call carries the node's API key (when one is set).

    ``x_api_key`` and ``authorization`` are the first ``X-API-Key`` and
    ``Authorization`` headers, if sent.
    """
    expected = node.config.api_key
    if expected is None:
        return
    given = x_api_key
    if given is None:
        scheme, _, value = (authorization or "").partition(" ")
        given = value.strip() if scheme.lower() == "apikey" else None
    # A header aiohttp could not decode as UTF-8 holds lone surrogates: "surrogatepass"
    # encodes any string, and never as the UTF-8 of a configured key (a wrong key, 401).
    if given is None or not hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode()
    ):
        node.counters["api_key_refused"] += 1
        raise ApiError(401, "missing or wrong API key (send it in the X-API-Key header)")


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


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if not body.strip():
            raise ApiError(400, "request body is empty; send a JSON object") from None
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "request body must be a JSON object")
    return payload


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


#: An answer to a publish request; or, while the engine must wait, an awaitable of it: a
#: future when what it publishes is queued already (in order: a later request may be
#: queued behind it), of the publication itself for a single one (:func:`answer_of` makes
#: the answer); or a coroutine when nothing is queued yet (a later request waits for it).
#: A publication the engine could not keep raises :class:`PublishFailed` when awaited.
Answer = (
    dict[str, Any]
    | asyncio.Future[Publication]
    | asyncio.Future[dict[str, Any]]
    | Coroutine[Any, Any, dict[str, Any]]
)


def answer_of(result: dict[str, Any] | Publication) -> dict[str, Any]:
    """The answer to a publish request, from what its awaited :data:`Answer` gave."""
    if isinstance(result, Publication):
        return {"offset": result.offset, "epoch": result.epoch}
    return result


def publish_body(pubsub: PubSub, body: bytes) -> Answer:
    """``POST /api/publish`` after its API key check: the body in, the JSON answer (200) out.

    The engine publishes at once if it can (the memory engine always can), and
    the answer is returned; else, if it queues publications (the SQLite engine),
    they are queued and a future of the answer is returned; else what is left is
    returned as a coroutine to await, which returns the answer. A publication
    the engine could not keep is answered 503. Raises :class:`ApiError` naming the
    problem, before anything is published. The aiohttp handler and the fast
    path (:mod:`orbiter.http.fast_publish`) both call this.
    """
    payload = _json_object(body)
    if "publications" in payload:
        return _publish_batch(pubsub, _batch_items(payload["publications"]))
    try:
        channel = validate_channel(payload.get("channel"))
        tags = payload.get("tags")
        if tags is not None:
            tags = validate_tags(tags)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    if "data" not in payload:
        raise ApiError(400, "'data' is missing")
    data = payload["data"]
    pub = pubsub.publish_at_once(channel, data, tags)
    if pub is not None:
        return {"offset": pub.offset, "epoch": pub.epoch}
    try:
        queued = pubsub.publish_soon(channel, data, tags)
    except PublishFailed as exc:  # the engine is closing
        raise ApiError(503, str(exc)) from None
    if queued is None:
        return _publish_later(pubsub, channel, data, tags)
    return queued


async def _publish_later(
    pubsub: PubSub, channel: str, data: JSON, tags: dict[str, str] | None
) -> dict[str, Any]:
    try:
        pub = await pubsub.publish(channel, data, tags)
    except PublishFailed as exc:
        raise ApiError(503, str(exc)) from None
    return {"offset": pub.offset, "epoch": pub.epoch}


#: One publication of a batch: its channel, data and tags.
_Item = tuple[str, JSON, dict[str, str] | None]


def _batch_items(items: object) -> list[_Item]:
    """``{"publications": [{"channel", "data", "tags"?}, ...]}``, every item checked."""
    if not isinstance(items, list) or not items:
        raise ApiError(400, "'publications' must be a non-empty list of {channel, data} objects")
    if len(items) > MAX_BATCH:
        raise ApiError(400, f"'publications' holds more than {MAX_BATCH} publications")
    batch = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "data" not in item:
            raise ApiError(400, f"publications[{i}] must be an object with 'channel' and 'data'")
        try:
            channel = validate_channel(item.get("channel"))
            batch.append((channel, item["data"], validate_tags(item.get("tags"))))
        except ValueError as exc:
            raise ApiError(400, f"publications[{i}]: {exc}") from None
    return batch


def _publish_batch(pubsub: PubSub, batch: list[_Item]) -> Answer:
    """Publish the batch in order, at once while the engine can, else queued."""
    results: list[dict[str, Any]] = []
    for index, (channel, data, tags) in enumerate(batch):
        pub = pubsub.publish_at_once(channel, data, tags)
        if pub is None:
            return _queue_batch(pubsub, batch, index, results)
        results.append({"channel": channel, "offset": pub.offset, "epoch": pub.epoch})
    return {"results": results}


def _queue_batch(
    pubsub: PubSub, batch: list[_Item], start: int, results: list[dict[str, Any]]
) -> Answer:
    """Queue the rest of the batch (one group commit takes them all), from ``start``."""
    queued: list[asyncio.Future[Publication]] = []
    try:
        for channel, data, tags in batch[start:]:
            future = pubsub.publish_soon(channel, data, tags)
            if future is None:  # an engine that does not queue: one after another
                return _publish_batch_later(pubsub, batch, start, results)
            queued.append(future)
    except BaseException as exc:  # refused midway (limit_channels): those queued still go out
        for future in queued:
            future.add_done_callback(_retrieved)
        if isinstance(exc, PublishFailed):  # the engine is closing
            raise ApiError(503, str(exc)) from None
        raise
    answer: asyncio.Future[dict[str, Any]] = queued[0].get_loop().create_future()
    waiting = len(queued)

    def done(_: asyncio.Future[Publication]) -> None:
        nonlocal waiting
        waiting -= 1
        if waiting or answer.done():
            return
        failed = [exc for exc in (f.exception() for f in queued) if exc is not None]
        if failed:
            ok = len(results) + len(queued) - len(failed)
            exc = failed[0]
            if isinstance(exc, PublishFailed):
                exc = ApiError(503, f"{exc} ({ok} of the {len(batch)} publications were published)")
            answer.set_exception(exc)
            return
        for item, kept in zip(batch[start:], queued, strict=True):
            pub = kept.result()
            results.append({"channel": item[0], "offset": pub.offset, "epoch": pub.epoch})
        answer.set_result({"results": results})

    for future in queued:
        future.add_done_callback(done)
    return answer


def _retrieved(future: asyncio.Future[Publication]) -> None:
    """Nobody waits for this future: its failure, if any, is read (and so not logged)."""
    if not future.cancelled():
        future.exception()


async def _publish_batch_later(
    pubsub: PubSub, batch: list[_Item], start: int, results: list[dict[str, Any]]
) -> dict[str, Any]:
    """The rest of :func:`_publish_batch`, from the first the engine could not publish at once.

    Queued all at once (an engine that commits publications in groups commits them
    together), answered once every one is published; a failure of any is the answer.
    """
    pending = [asyncio.ensure_future(pubsub.publish(*item)) for item in batch[start:]]
    done = await asyncio.gather(*pending, return_exceptions=True)
    for (channel, _, _), pub in zip(batch[start:], done, strict=True):
        if isinstance(pub, PublishFailed):
            ok = len(results) + sum(not isinstance(d, BaseException) for d in done)
            raise ApiError(503, f"{pub} ({ok} of the {len(batch)} publications were published)")
        if isinstance(pub, BaseException):
            raise pub
        results.append({"channel": channel, "offset": pub.offset, "epoch": pub.epoch})
    return {"results": results}


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
