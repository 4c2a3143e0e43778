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

A client that closes the stream is noticed at once
(:func:`~orbiter.transports.departure.listen`): its session ends, its
subscriptions and its place in the connection limits are released then,
not at the next heartbeat.

After the opening events the session's outbox pushes to an
:class:`EventStream` (as it does to a WebSocket), which writes each batch
straight to the connection's transport: fan-out wakes no task per stream,
and subscribers of one channel share one framing of each batch (what that
saved against a pulling stream: ``docs/benchmarks.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from aiohttp import HttpVersion11, web

from orbiter.model import StreamPosition, TooManyConnections
from orbiter.protocol.eventstream import (
    CONTENT_TYPE,
    HEARTBEAT,
    BadEventId,
    encode_positions,
    event,
    parse_positions,
)
from orbiter.protocol.native import ErrorCode, Refusal, validate_channel
from orbiter.services.pushes import pushes
from orbiter.services.shared_batch import SharedBatch
from orbiter.session.session import ClientSession, Subscribed
from orbiter.transports.app_keys import NODE
from orbiter.transports.departure import listen
from orbiter.transports.errors import error_response
from orbiter.transports.request_checks import request_credentials
from orbiter.transports.streaming import write

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


def _chunk(data: bytes) -> bytes:
    """``data`` as one HTTP/1.1 chunk."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def _batch_event(batch: SharedBatch) -> bytes:
    """A channel's batch as the event a subscriber of that channel alone gets."""
    position = StreamPosition(batch.last_offset, batch.pubs[-1].epoch)
    data = b"[" + b",".join(pushes(batch)) + b"]"
    return event(data, id=encode_positions([position]))


def _batch_chunk(batch: SharedBatch) -> bytes:
    """:func:`_batch_event` as one HTTP/1.1 chunk."""
    return _chunk(_batch_event(batch))


#: The :meth:`SharedBatch.framed` kinds of a batch's event, as a chunk and as it is.
_CHUNKED_EVENT, _PLAIN_EVENT = "sse-event-chunked", "sse-event"


class EventStream:
    """One SSE connection's writer: its session's outbox :class:`~orbiter.services.outbox.Sink`.

    Every batch the outbox hands over is written at once, as one event, to
    the connection's transport, below aiohttp's response writer (as a chunk
    when the response is chunked), so fan-out wakes no task per stream. A
    subscriber of one channel gets a channel's :class:`SharedBatch` as bytes
    framed once for all such subscribers (its id is the channel's position
    after the batch); one of several channels gets its own event, whose id
    holds every channel's position. :meth:`run` waits for the end, sending
    a heartbeat after each ``ping_interval`` without an event; a client that
    has not read any of what waits in the transport's buffer across two
    intervals is cut.
    """

    __slots__ = ("_alone", "_chunked", "_done", "_positions", "_request", "_session", "_wrote")

    def __init__(
        self, request: web.Request, session: ClientSession, subs: list[Subscribed], chunked: bool
    ) -> None:
        self._request = request
        self._session = session
        self._chunked = chunked
        #: Every channel's position, in the URL's order, as of the last event of its own.
        self._positions = {sub.channel: sub.start for sub in subs}
        self._alone = len(subs) == 1
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._wrote = False

    def _transport(self) -> asyncio.Transport | None:
        """The connection, while this stream is on it (never after its end)."""
        done = self._done
        if done.done():
            return None
        transport = self._request.transport
        if transport is None or transport.is_closing():
            done.set_result(None)
            return None
        return transport

    def send(self, data: bytes) -> None:
        """Write ``data`` (whole events) unless the client is gone."""
        transport = self._transport()
        if transport is not None and data:
            transport.write(_chunk(data) if self._chunked else data)
            self._wrote = True

    def _positions_event(self, messages: list[bytes]) -> bytes:
        positions = self._positions
        for channel in positions:
            now = self._session.position(channel)
            if now is not None:
                positions[channel] = now
        data = b"[" + b",".join(messages) + b"]"
        return event(data, id=encode_positions(list(positions.values())))

    # ------------------------------------------------------------ output (Sink)

    def backlog(self) -> int:
        transport = self._request.transport
        return 0 if transport is None else transport.get_write_buffer_size()

    def write(self, messages: list[bytes]) -> None:
        self.send(self._positions_event(messages))

    def write_batch(self, batch: SharedBatch) -> None:
        if not self._alone:
            self.send(self._positions_event(pushes(batch)))
            return
        transport = self._transport()
        if transport is not None:
            if self._chunked:
                data = batch.framed(_CHUNKED_EVENT, _batch_chunk)
            else:
                data = batch.framed(_PLAIN_EVENT, _batch_event)
            transport.write(data)
            self._wrote = True

    def ended(self) -> None:
        """The outbox closed, after what it queued was handed over."""
        self.send(disconnect_event(self._session))
        if not self._done.done():
            self._done.set_result(None)

    # ------------------------------------------------------------ waiting

    def client_left(self) -> None:
        """The connection is gone (:mod:`~orbiter.transports.departure`): the stream ends."""
        if not self._done.done():
            self._done.set_result(None)

    async def run(self, interval: float) -> None:
        """Until the outbox closes or the client goes (at once, where the connection can tell
        it: see :meth:`client_left`): heartbeats, and cut a stalled client."""
        unsent = 0
        while not self._done.done():
            await asyncio.wait((self._done,), timeout=interval)
            if self._done.done():
                return
            transport = self._transport()
            if transport is None:
                return
            backlog = transport.get_write_buffer_size()
            if backlog and unsent and backlog >= unsent:
                remote = self._request.remote
                log.info("GET /connection/sse from %s: the client stopped reading; cut", remote)
                transport.abort()
                return
            unsent = backlog
            if not self._wrote:
                self.send(HEARTBEAT)
            self._wrote = False


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
        chunked = request.version >= HttpVersion11
        if chunked:
            response.enable_chunked_encoding()
        with contextlib.suppress(ConnectionError):
            await response.prepare(request)
            await write(request, response, opening_events(subs), timing)
            stream = EventStream(request, session, subs, chunked)
            session.outbox.attach(stream, node.flusher, stream.ended)
            listen(request, stream)
            await stream.run(timing.ping_interval)
            await response.write_eof()
        return response
    finally:
        listen(request, None)
        await node.end_session(session)
