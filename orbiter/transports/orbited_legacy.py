"""Orbited 0.3 URLs: ``GET /<location>|<user>,<session>,<transport>``.

A page written for Orbited 0.3 receives what ``event(keys, ...)`` (``POST
/api/event``) sends to its key ``"user, session, /location"``, whose
channel is ``$key:user, session, /location``:

- ``iframe`` (and ``iframe_domain``, served alike: browsers no longer let
  a page set ``document.domain``): an HTML document streamed into an iframe; each event is a
  ``<script>`` calling ``window.parent.event(payload)`` (or the function
  named by ``?callback=``), the payload written safely for a script. After
  ``orbited.response_limit`` bytes, or when the server closes the session,
  the document ends with a script that loads the iframe again.
- ``xhr``: long polling; each response is one event's payload as a
  JavaScript value for ``eval`` (``(...)``), or an empty body when
  ``poll.timeout`` passed without one; events come in order, one per poll.
- ``sse``: ``EventSource``; each event is one payload as JSON, with an id
  that ``Last-Event-ID`` resumes from.

So that nothing sent between two connections of a key is lost or sent
twice, each connection holds the key's position as it writes
(:class:`KeyPositions`); the next connection resumes from the newest one's,
even while that one still runs (a reloading page's new request can come
before the old one's close is seen), or from where the last one ended, kept
``orbited.disconnect_delay`` seconds.
The streams run on a :class:`ClientSession` (``connect_key``); the polls on
the :class:`PollHub`, like ``GET /poll``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from redis.exceptions import RedisError

from orbiter.config.settings import OrbitedSettings
from orbiter.model import StreamPosition, TooManyConnections
from orbiter.node import Node
from orbiter.protocol.eventstream import HEARTBEAT, BadEventId, encode_positions, parse_positions
from orbiter.protocol.eventstream import event as sse_event
from orbiter.protocol.keys import ConnectionKey
from orbiter.protocol.native import Refusal
from orbiter.protocol.orbited_urls import BadLegacyUrl, LegacyTransport, parse_legacy_path
from orbiter.protocol.scripts import (
    HTML_CONTENT_TYPE,
    IFRAME_KEEPALIVE,
    JAVASCRIPT_CONTENT_TYPE,
    BadCallback,
    check_callback,
    eval_body,
    iframe_call,
    iframe_end,
    iframe_prelude,
)
from orbiter.services.polls import TooManyPolls
from orbiter.session.key_positions import KeyHold, KeyPositions
from orbiter.session.session import ClientSession, Subscribed
from orbiter.transports.app_keys import NODE
from orbiter.transports.errors import error_response
from orbiter.transports.longpoll import NO_STORE, POLL_HUB, busy_response, client_connected
from orbiter.transports.request_checks import authorize_read, request_credentials
from orbiter.transports.sse import (
    SSE_HEADERS,
    busy,
    disconnect_event,
    opening_events,
    refusal_status,
)
from orbiter.transports.streaming import pump, write

log = logging.getLogger("orbiter.orbited")

#: The route: any path with one ``|`` in it.
LEGACY_ROUTE = r"/{orbited:[^|]*\|[^|]*}"
#: Keys whose positions are kept at most (the oldest are forgotten first).
MAX_KEY_POSITIONS = 100_000
#: Seconds before an iframe whose stream ended loads it again.
RELOAD_AFTER_LIMIT = 0.05
RELOAD_AFTER_CLOSE = 2.0
DEFAULT_CALLBACK = "event"


class LegacyState:
    """What the Orbited URLs keep between connections of a key."""

    def __init__(self, settings: OrbitedSettings) -> None:
        self.settings = settings
        #: Each key's newest connection (a newer poll of the key answers in its place).
        self.positions = KeyPositions(ttl=settings.disconnect_delay, limit=MAX_KEY_POSITIONS)


LEGACY_STATE = web.AppKey("orbited_legacy_state", LegacyState)


def _now() -> float:
    return asyncio.get_running_loop().time()


async def _begin(node: Node, state: LegacyState, key: ConnectionKey) -> KeyHold:
    """The key's new connection; on a Redis engine it goes on from where the key's last
    connection on any node ended, when that is newer than what this node knows."""
    hold = state.positions.begin(key, _now())
    directory = node.session_directory
    if directory is None:
        return hold
    try:
        kept = await directory.key_position(key.channel)
    except (RedisError, OSError) as exc:
        log.warning("Orbited key %s: its position in Redis cannot be read: %s", key, exc)
        return hold
    here = hold.position
    if kept is not None and (here is None or kept.epoch != here.epoch or kept.offset > here.offset):
        hold.position = kept
    return hold


async def _end(node: Node, state: LegacyState, key: ConnectionKey, hold: KeyHold) -> None:
    """The connection ended: its position kept here, and in Redis for the other nodes."""
    state.positions.end(key, hold, _now())
    await _share(node, state, key, hold)


async def _share(node: Node, state: LegacyState, key: ConnectionKey, hold: KeyHold) -> None:
    """On a Redis engine, keep the key's position where the other nodes read it."""
    directory, position = node.session_directory, hold.position
    if directory is None or position is None:
        return
    try:
        await directory.keep_key_position(key.channel, position, state.settings.disconnect_delay)
    except (RedisError, OSError) as exc:
        log.warning("Orbited key %s: its position cannot be kept in Redis: %s", key, exc)


async def legacy_handler(request: web.Request) -> web.StreamResponse:
    try:
        url = parse_legacy_path(request.path)
    except BadLegacyUrl as exc:
        log.info("GET %s from %s: %s", request.path[:200], request.remote, exc)
        return error_response(400, str(exc))
    if url.transport is LegacyTransport.XHR:
        refusal = await authorize_read(request, key=url.key)
        if refusal is not None:
            return refusal
        return await _xhr(request, url.key)
    return await _stream(request, url.key, url.transport)


# --------------------------------------------------------------------------- xhr


async def _xhr(request: web.Request, key: ConnectionKey) -> web.Response:
    node = request.app[NODE]
    hub = request.app[POLL_HUB]
    state = request.app[LEGACY_STATE]
    hold = await _begin(node, state, key)
    since = hold.position or await hub.position(key.channel)

    def current() -> bool:
        return state.positions.current(key, hold)

    try:
        with node.held_request(request.remote or "?"):
            batch = await hub.poll(
                key.channel,
                since,
                timeout=node.config.poll.timeout,
                alive=lambda: current() and client_connected(request),
            )
    except (TooManyPolls, TooManyConnections) as exc:
        log.warning("GET %s from %s: %s", request.path[:200], request.remote, exc)
        state.positions.end(key, hold, _now())
        return busy_response(exc)
    superseded = not current()
    hold.position = since
    body = b""
    if superseded or batch is None:  # a newer connection of this key goes on / the client left
        pass
    elif not batch.publications:  # timeout, or lost (history trimmed): go on from now
        hold.position = batch.position
    else:
        pub = batch.publications[0]
        hold.position = StreamPosition(pub.offset, pub.epoch)
        body = eval_body(orjson.dumps(pub.data))
    await _end(node, state, key, hold)  # before the answer: the next poll may go elsewhere
    return _eval_response(body)


def _eval_response(body: bytes) -> web.Response:
    return web.Response(body=body, headers={"Content-Type": JAVASCRIPT_CONTENT_TYPE, **NO_STORE})


# --------------------------------------------------------------------------- streams


class KeyFramer:
    """A key session's publications, one event each, in the transport's framing."""

    def __init__(
        self, hold: KeyHold, start: StreamPosition, style: Callable[[StreamPosition, bytes], bytes]
    ) -> None:
        #: The key's position, moved on as events are written (read by its next connection).
        self.hold = hold
        hold.position = start
        self._framed = start
        self._style = style

    def frame(self, batch: list[bytes]) -> bytes:
        out = []
        for message in batch:
            push = orjson.loads(message)
            if push.get("push") != "pub":
                continue
            self._framed = StreamPosition(push["offset"], self._framed.epoch)
            out.append(self._style(self._framed, orjson.dumps(push["data"])))
        return b"".join(out)

    def written(self) -> None:
        self.hold.position = self._framed


def _iframe_style(position: StreamPosition, payload: bytes) -> bytes:
    return iframe_call(payload)


def _sse_style(position: StreamPosition, payload: bytes) -> bytes:
    return sse_event(payload, id=encode_positions([position]))


async def _stream(
    request: web.Request, key: ConnectionKey, transport: LegacyTransport
) -> web.StreamResponse:
    node = request.app[NODE]
    state = request.app[LEGACY_STATE]
    iframe = transport.streams_html
    callback = DEFAULT_CALLBACK
    last_id = request.headers.get("Last-Event-ID", "")
    try:
        if iframe:
            callback = check_callback(request.query.get("callback", DEFAULT_CALLBACK))
        resumed = parse_positions(last_id, 1)[0] if last_id and not iframe else None
    except (BadCallback, BadEventId) as exc:
        log.info("GET %s from %s: %s", request.path[:200], request.remote, exc)
        return error_response(400, str(exc))
    try:
        session = node.new_session(
            request.remote or "?", request_credentials(request, f"orbited-{transport.value}")
        )
    except TooManyConnections as exc:
        return busy(exc)
    hold = await _begin(node, state, key)
    try:
        try:
            sub = await session.connect_key(key, resumed or hold.position)
        except Refusal as exc:
            return error_response(refusal_status(exc), exc.message)
        framer = KeyFramer(hold, sub.start, _iframe_style if iframe else _sse_style)
        if iframe:

            async def share() -> None:  # before the reload: it may go to another node
                await _share(node, state, key, hold)

            return await _run_iframe(request, session, framer, callback, state.settings, share)
        return await _run_sse(request, session, framer, sub)
    finally:
        await _end(node, state, key, hold)
        await node.end_session(session)


async def _run_iframe(
    request: web.Request,
    session: ClientSession,
    framer: KeyFramer,
    callback: str,
    settings: OrbitedSettings,
    share: Callable[[], Awaitable[None]],
) -> web.StreamResponse:
    timing = request.app[NODE].config.session
    headers = {"Content-Type": HTML_CONTENT_TYPE, "X-Accel-Buffering": "no", **NO_STORE}
    response = web.StreamResponse(headers=headers)
    with contextlib.suppress(ConnectionError):
        await response.prepare(request)
        prelude = iframe_prelude(callback)
        await write(request, response, prelude, timing)
        closed = await pump(
            request,
            response,
            session,
            framer,
            keepalive=IFRAME_KEEPALIVE,
            timing=timing,
            limit=max(1, settings.response_limit - len(prelude)),
        )
        delay = RELOAD_AFTER_CLOSE if closed else RELOAD_AFTER_LIMIT
        await share()
        await write(request, response, iframe_end(delay), timing)
        await response.write_eof()
    return response


async def _run_sse(
    request: web.Request, session: ClientSession, framer: KeyFramer, sub: Subscribed
) -> web.StreamResponse:
    timing = request.app[NODE].config.session
    response = web.StreamResponse(headers=SSE_HEADERS)
    with contextlib.suppress(ConnectionError):
        await response.prepare(request)
        await write(request, response, opening_events([sub]), timing)
        await pump(request, response, session, framer, keepalive=HEARTBEAT, timing=timing)
        if session.close_code is not None:
            await write(request, response, disconnect_event(session), timing)
        await response.write_eof()
    return response
