"""Plain long polling, JSON or JSONP (the seeds' JSONP chat): ``GET /poll``.

``GET /poll?channel=C&since=N[&epoch=E][&callback=fn]`` answers at once
with every publication after offset N, in one batch, or holds the request
until one arrives or ``poll.timeout`` seconds pass (then the batch is
empty). The answer is the channel's page as in ``GET /api/history``:
``{channel, epoch, offset, recoverable, publications: [{offset, data,
time}]}``; the next poll asks ``since=offset&epoch=epoch``. Without
``since`` it answers at once with the current position; with ``last=N``
instead, at once with the channel's newest N publications kept (a new
page's backlog, at most the channel's ``history_size``) and the position
after them. With ``callback``
the JSON is wrapped as JSONP (``application/javascript``).

Holding, waking and bounding polls is :class:`PollHub`'s job; this adapter
parses the query and frames the answer.
"""

from __future__ import annotations

import logging

from aiohttp import web

from orbiter.model import StreamPosition, TooManyConnections
from orbiter.protocol.native import reserved_refusal, validate_channel
from orbiter.protocol.scripts import JAVASCRIPT_CONTENT_TYPE, check_callback, jsonp
from orbiter.services.polls import Batch, PollHub, TooManyPolls
from orbiter.transports.app_keys import NODE
from orbiter.transports.errors import error_response
from orbiter.transports.request_checks import authorize_read

log = logging.getLogger("orbiter.poll")

POLL_HUB = web.AppKey("poll_hub", PollHub)

NO_STORE = {
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "X-Content-Type-Options": "nosniff",
}


class _BadQuery(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def client_connected(request: web.Request) -> bool:
    """False once the client's connection is gone."""
    transport = request.transport
    return transport is not None and not transport.is_closing()


def busy_response(exc: Exception) -> web.Response:
    response = error_response(503, f"{exc}; poll again shortly")
    response.headers["Retry-After"] = "1"
    return response


def _offset(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise _BadQuery(400, f"query parameter '{name}' must be a non-negative integer")
    return int(raw)


def _parse(
    request: web.Request,
) -> tuple[str, int | None, str | None, str | None, int | None]:
    query = request.query
    callback = query.get("callback")
    if callback is not None:
        try:
            check_callback(callback)
        except ValueError as exc:
            raise _BadQuery(400, str(exc)) from None
    try:
        channel = validate_channel(query.get("channel"))
    except ValueError as exc:
        raise _BadQuery(400, str(exc)) from None
    reserved = reserved_refusal(channel)
    if reserved is not None:
        raise _BadQuery(403, reserved)
    since = _offset(request, "since")
    epoch = query.get("epoch")
    if epoch is not None and (since is None or not epoch):
        raise _BadQuery(400, "query parameter 'epoch' must be non-empty and go with 'since'")
    last = _offset(request, "last")
    if last is not None and since is not None:
        raise _BadQuery(400, "query parameters 'last' and 'since' do not go together")
    return channel, since, epoch, callback, last


async def poll_handler(request: web.Request) -> web.Response:
    node = request.app[NODE]
    hub = request.app[POLL_HUB]
    try:
        channel, since, epoch, callback, last = _parse(request)
    except _BadQuery as exc:
        log.info("GET /poll from %s: %s", request.remote, exc.message)
        return error_response(exc.status, exc.message)
    refusal = await authorize_read(request, channel=channel)
    if refusal is not None:
        return refusal
    if last is not None:  # a new page's backlog: the newest publications kept, at once
        page = await node.pubsub.history(channel, None, limit=last)
        batch: Batch | None = Batch.from_page(channel, page)
    elif since is None:
        batch = Batch(channel, await hub.position(channel), [], True)
    else:
        if epoch is None:
            epoch = (await hub.position(channel)).epoch
        try:
            with node.held_request(request.remote or "?"):
                batch = await hub.poll(
                    channel,
                    StreamPosition(since, epoch),
                    timeout=node.config.poll.timeout,
                    alive=lambda: client_connected(request),
                )
        except (TooManyPolls, TooManyConnections) as exc:
            log.warning("GET /poll from %s: %s", request.remote, exc)
            return busy_response(exc)
    if batch is None:  # the client left; nobody reads this
        return web.Response(status=204)
    if callback is None:
        return web.Response(
            body=batch.json(), headers={"Content-Type": "application/json", **NO_STORE}
        )
    return web.Response(
        body=jsonp(callback, batch.json()),
        headers={"Content-Type": JAVASCRIPT_CONTENT_TYPE, **NO_STORE},
    )
