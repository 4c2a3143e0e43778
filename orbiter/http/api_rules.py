"""The HTTP API's rules that need no aiohttp: its error, the API key, a JSON body,
and ``POST /api/publish`` from its body to its answer.

aiohttp's handlers (:mod:`orbiter.http.api`) and the publish fast path
(:mod:`orbiter.http.fast_publish`) both call them, so the rules are written once.
Every publication over HTTP runs them: they are compiled with mypyc
(``COMPILED_MODULES`` in ``orbiter/version.py``), which is why they are apart
from the handlers: aiohttp's ``@web.middleware`` sets an attribute on its
function, which a compiled function has no room for.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson

from orbiter.engine.base import PublishFailed
from orbiter.model import JSON, Publication
from orbiter.protocol.native import validate_channel, validate_tags

if TYPE_CHECKING:
    from orbiter.node import Node
    from orbiter.services.pubsub import PubSub

MAX_BATCH = 10_000


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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
#: What a request's queued publications gave, once the engine told: the publication (a
#: single one: :func:`answer_of` makes the answer), the answer (a batch), or the failure
#: (:class:`PublishFailed` for a single one, :class:`ApiError` for a batch, or a bug).
Outcome = dict[str, Any] | Publication | BaseException
#: Told, on the loop, the outcome of the queued publish request numbered ``slot``
#: (:func:`publish_body`'s ``told``): ``told(slot, outcome)``.
Told = Callable[[int, Outcome], None]


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
    problem, before anything is published. The aiohttp handler calls this; the
    fast path (:mod:`orbiter.http.fast_publish`) calls :func:`publish_body_then`.
    """
    answer = publish_body_then(pubsub, body, None, 0)
    assert answer is not None  # (None only when told)
    return answer


def publish_body_then(pubsub: PubSub, body: bytes, told: Told | None, slot: int) -> Answer | None:
    """:func:`publish_body`, but given ``told``, what the engine queues is told, not a
    future: None is returned and ``told(slot, outcome)`` is called as soon as the engine
    knows (:meth:`PubSub.publish_then`: from the SQLite engine's commit report, an
    iteration before a future's callbacks would run)."""
    payload = _json_object(body)
    if "publications" in payload:
        return _publish_batch(pubsub, _batch_items(payload["publications"]), told, slot)
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
        if told is not None:
            if pubsub.publish_then(channel, data, tags, partial(told, slot)):
                return None
        else:
            queued = pubsub.publish_soon(channel, data, tags)
            if queued is not None:
                return queued
    except PublishFailed as failed:  # the engine is closing
        raise ApiError(503, str(failed)) from None
    return _publish_later(pubsub, channel, data, tags)


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


def _publish_batch(
    pubsub: PubSub, batch: list[_Item], told: Told | None, slot: int
) -> Answer | None:
    """Publish the batch in order, at once while the engine can, else queued."""
    results: list[dict[str, Any]] = []
    for index, (channel, data, tags) in enumerate(batch):
        pub = pubsub.publish_at_once(channel, data, tags)
        if pub is None:
            return _queue_batch(pubsub, batch, index, results, told, slot)
        results.append({"channel": channel, "offset": pub.offset, "epoch": pub.epoch})
    return {"results": results}


def _queue_batch(
    pubsub: PubSub,
    batch: list[_Item],
    start: int,
    results: list[dict[str, Any]],
    told: Told | None,
    slot: int,
) -> Answer | None:
    """Queue the rest of the batch (one group commit takes them all), from ``start``: its
    answer is told (``told``), or a future of it returned."""
    answer: asyncio.Future[dict[str, Any]] | None = None
    if told is None:
        answer = asyncio.get_running_loop().create_future()
        tell: Callable[[Outcome], None] = partial(_settle, answer)
    else:
        tell = partial(told, slot)
    waiting = _QueuedBatch(batch, start, results, tell)
    try:
        for index, (channel, data, tags) in enumerate(batch[start:]):
            if not pubsub.publish_then(channel, data, tags, partial(waiting.kept, index)):
                # an engine that does not queue: one after another
                waiting.abandoned = True
                return _publish_batch_later(pubsub, batch, start, results)
    except BaseException as exc:  # refused midway (limit_channels): those queued still go out
        waiting.abandoned = True
        if isinstance(exc, PublishFailed):  # the engine is closing
            raise ApiError(503, str(exc)) from None
        raise
    return answer


class _QueuedBatch:
    """A batch's queued publications, until the engine told how each went; then the
    batch's answer (or its failure) is told."""

    __slots__ = ("abandoned", "batch", "missing", "outcomes", "results", "start", "tell")

    def __init__(
        self,
        batch: list[_Item],
        start: int,
        results: list[dict[str, Any]],
        tell: Callable[[Outcome], None],
    ) -> None:
        self.batch = batch
        self.start = start
        #: The answers of those published at once (before ``start``).
        self.results = results
        self.tell = tell
        self.outcomes: list[Publication | BaseException | None] = [None] * (len(batch) - start)
        self.missing = len(batch) - start
        #: The request was answered otherwise (refused midway): nothing more is told.
        self.abandoned = False

    def kept(self, index: int, outcome: Publication | BaseException) -> None:
        self.outcomes[index] = outcome
        self.missing -= 1
        if self.missing or self.abandoned:
            return
        failed = [exc for exc in self.outcomes if isinstance(exc, BaseException)]
        results = self.results
        if failed:
            ok = len(results) + len(self.outcomes) - len(failed)
            exc = failed[0]
            if isinstance(exc, PublishFailed):
                exc = ApiError(
                    503, f"{exc} ({ok} of the {len(self.batch)} publications were published)"
                )
            self.tell(exc)
            return
        for (channel, _, _), pub in zip(self.batch[self.start :], self.outcomes, strict=True):
            assert isinstance(pub, Publication)
            results.append({"channel": channel, "offset": pub.offset, "epoch": pub.epoch})
        self.tell({"results": results})


def _settle(future: asyncio.Future[dict[str, Any]], outcome: Outcome) -> None:
    """Give ``future`` the outcome a queued batch was told."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        assert isinstance(outcome, dict)
        future.set_result(outcome)


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
