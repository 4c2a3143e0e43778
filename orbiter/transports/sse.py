"""Plain Server-Sent Events for read-only subscribers: ``GET /connection/sse``.

``new EventSource("/connection/sse?channel=a&channel=b")`` is all a page
needs. Underneath is an ordinary :class:`ClientSession` subscribed by
direct call, so limits, slow-consumer closing, presence and shutdown apply
as on a WebSocket; this adapter only frames what the session queues:

- first, for each channel whose ``Last-Event-ID`` position could not be
  recovered, an ``unrecoverable`` event ``{channel, epoch, offset}``; then
  a ``subscribed`` event ``{channels: [{channel, epoch, offset,
  recovered?}]}`` whose id is where every channel starts;
- then each batch the session queued as one ``message`` event whose data is
  a JSON array of native pushes (``{"push": "pub", ...}``, join, leave) and
  whose id holds every channel's position after the batch
  (:mod:`orbiter.protocol.eventstream`). A batch is dispatched whole or not
  at all, so the browser's automatic reconnect with ``Last-Event-ID``
  resumes each channel exactly: nothing lost, nothing twice;
- a comment every ``session.ping_interval`` seconds without an event;
- when the server closes the session, a ``disconnect`` event ``{code,
  reason, reconnect}`` before the stream ends (the browser then reconnects).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import orjson
from aiohttp import web

from orbiter.http.api import error_response
from orbiter.http.keys import NODE
from orbiter.model import StreamPosition
from orbiter.node import TooManyConnections
from orbiter.protocol.eventstream import (
    CONTENT_TYPE,
    HEARTBEAT,
    BadEventId,
    encode_positions,
    event,
    parse_positions,
)
from orbiter.protocol.native import ErrorCode, Refusal, validate_channel
from orbiter.session.session import ClientSession, Subscribed
from orbiter.transports.guard import request_credentials
from orbiter.transports.streaming import pump, write

log = logging.getLogger("orbiter.sse")

SSE_HEADERS = {
    "Content-Type": CONTENT_TYPE,
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def refusal_status(exc: Refusal) -> int:
    """The HTTP status for a refused subscription."""
    if exc.code in (ErrorCode.UNAUTHORIZED, ErrorCode.TOKEN_EXPIRED):
        return 401
    return 403 if exc.code is ErrorCode.PERMISSION_DENIED else 400


def busy(exc: Exception) -> web.Response:
    """The answer when the node has no room for another connection."""
    response = error_response(503, str(exc))
    response.headers["Retry-After"] = "5"
    return response


def opening_events(subs: list[Subscribed]) -> bytes:
    """``unrecoverable`` events, then ``subscribed`` with the starting positions as id."""
    out = []
    for sub in subs:
        if sub.recovered is False:
            lost = {
                "channel": sub.channel,
                "epoch": sub.position.epoch,
                "offset": sub.position.offset,
            }
            out.append(event(orjson.dumps(lost), name="unrecoverable"))
    channels = []
    for sub in subs:
        info: dict[str, Any] = {
            "channel": sub.channel,
            "epoch": sub.start.epoch,
            "offset": sub.start.offset,
        }
        if sub.recovered is not None:
            info["recovered"] = sub.recovered
        channels.append(info)
    start = encode_positions([sub.start for sub in subs])
    out.append(event(orjson.dumps({"channels": channels}), name="subscribed", id=start))
    return b"".join(out)


def disconnect_event(session: ClientSession) -> bytes:
    """Why the server ended the session, as a ``disconnect`` event."""
    code = session.close_code
    if code is None:
        return b""
    reason = {"code": int(code), "reason": session.close_reason, "reconnect": code.reconnect}
    return event(orjson.dumps(reason), name="disconnect")


class BatchFramer:
    """Each batch as one event: a JSON array of pushes, every channel's position as id."""

    def __init__(self, session: ClientSession, subs: list[Subscribed]) -> None:
        self._session = session
        self._positions: dict[str, StreamPosition] = {sub.channel: sub.start for sub in subs}

    def frame(self, batch: list[bytes]) -> bytes:
        positions = self._positions
        for channel in positions:
            now = self._session.position(channel)
            if now is not None:
                positions[channel] = now
        data = b"[" + b",".join(batch) + b"]"
        return event(data, id=encode_positions(list(positions.values())))

    def written(self) -> None:
        pass


def _channels(values: list[str], limit: int) -> list[str]:
    if not values:
        raise ValueError("name at least one channel: /connection/sse?channel=a&channel=b")
    if len(values) > limit:
        raise ValueError(
            f"at most {limit} channels per connection (limits.max_subscriptions); "
            f"the URL names {len(values)}"
        )
    seen: set[str] = set()
    for channel in values:
        validate_channel(channel)
        if channel in seen:
            raise ValueError(f"channel {channel!r} is named twice")
        seen.add(channel)
    return values


async def sse_handler(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    timing = node.config.session
    try:
        channels = _channels(
            request.query.getall("channel", []), node.config.limits.max_subscriptions
        )
        last_id = request.headers.get("Last-Event-ID", "")
        since = parse_positions(last_id, len(channels)) if last_id else [None] * len(channels)
    except (ValueError, BadEventId) as exc:
        log.info("GET /connection/sse from %s: %s", request.remote, exc)
        return error_response(400, str(exc))
    try:
        session = node.new_session(request.remote or "?", request_credentials(request, "sse"))
    except TooManyConnections as exc:
        return busy(exc)
    try:
        subs = []
        try:
            for channel, position in zip(channels, since, strict=True):
                subs.append(await session.subscribe(channel, position))
        except Refusal as exc:
            log.info("GET /connection/sse from %s: %s", request.remote, exc.message)
            return error_response(refusal_status(exc), exc.message)
        response = web.StreamResponse(headers=SSE_HEADERS)
        with contextlib.suppress(ConnectionError):
            await response.prepare(request)
            await write(request, response, opening_events(subs), timing)
            framer = BatchFramer(session, subs)
            await pump(request, response, session, framer, keepalive=HEARTBEAT, timing=timing)
            if session.close_code is not None:
                await write(request, response, disconnect_event(session), timing)
            await response.write_eof()
        return response
    finally:
        await node.end_session(session)
