"""The native protocol over a raw WebSocket (``/connection/websocket``), served below aiohttp.

Each text (or binary, UTF-8) frame from the client holds newline-separated
commands, run in order: in ``data_received`` itself while they are publishes the
session can handle at once (:meth:`ClientSession.receive_now`), else in a task
that runs the rest of that message while reading pauses; what the session
queued in one event-loop iteration goes out as one text frame (this is the outbox's
:class:`~orbiter.services.outbox.Sink`), and a channel's batch is framed once
(:meth:`SharedBatch.framed`) and the same bytes written to every subscriber.

A handshake the sniffer (:mod:`orbiter.transports.sniffing`) shows this module
is taken from aiohttp when it passes every check aiohttp's route applies, made
by the same functions (:mod:`orbiter.transports.request_checks`, the
connection limits), and served by a bare :class:`NativeWebSocket` protocol
over the sans-I/O core :mod:`orbiter.protocol.websocket`, so an idle
connection holds no aiohttp object, task or timer of its own: pings and
timeouts come from the node's one :class:`DeadlineWheel`. A head that fails a
check goes on to aiohttp, whose route refuses it (:func:`websocket_handler`).
What this saves, and why not take the connection from aiohttp after its own
handshake: ``docs/benchmarks.md``, "Parts chosen by measurement".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any, cast

from aiohttp import web
from aiohttp._websocket.helpers import websocket_mask  # (aiohttp is pinned: pyproject.toml)

from orbiter.model import TooManyConnections
from orbiter.node import Node
from orbiter.protocol.native import DisconnectCode
from orbiter.protocol.websocket import (
    MESSAGE_TOO_BIG,
    Failed,
    Message,
    PeerClosed,
    ServerConnection,
    text_frame,
)
from orbiter.protocol.websocket_handshake import (
    HandshakeHead,
    bad_request,
    parse_head,
    refusal,
    switching_protocols,
    undecodable,
)
from orbiter.services.pushes import pushes
from orbiter.services.shared_batch import SharedBatch
from orbiter.session.session import ClientSession
from orbiter.transports.app_keys import RAW_ROUTERS
from orbiter.transports.deadline_wheel import DeadlineWheel
from orbiter.transports.errors import error_response
from orbiter.transports.request_checks import (
    cors_headers,
    is_guarded,
    origin_verdict,
    peer_address,
    request_credentials,
)
from orbiter.transports.sniffing import Claim, ClaimedProtocol, Takeover

__all__ = ["PATH", "NativeWebSocket", "add_native_websocket", "text_frame", "websocket_handler"]

log = logging.getLogger("orbiter.websocket")

PATH = "/connection/websocket"
_HEAD_START = b"GET " + PATH.encode()

#: The key under which a batch caches its WebSocket framing.
_FRAMING = "websocket-text"


def _frame_messages(messages: list[bytes]) -> bytes:
    return text_frame(b"\n".join(messages))


def _frame_batch(batch: SharedBatch) -> bytes:
    """A channel's batch as one text frame of its native pushes (once for all connections)."""
    messages = batch.native
    if messages is None:
        messages = pushes(batch)
    return text_frame(b"\n".join(messages))


def unmask_in_c(payload: bytes, mask: bytes) -> bytes:
    """The WebSocket core's unmasking (``protocol/websocket.Unmask``) by aiohttp's C loop
    (its Cython build; its own pure-Python loop where that is missing): a third of the
    core's big-integer XOR's cost on a ~130-byte publish command."""
    data = bytearray(payload)
    websocket_mask(mask, data)
    return bytes(data)


def add_native_websocket(app: web.Application, node: Node) -> None:
    """Serve ``/connection/websocket``: the sniffer's router, and aiohttp's route for refusals."""
    endpoint = _Endpoint(node)
    app[RAW_ROUTERS].append(endpoint.route)
    app.router.add_get(PATH, websocket_handler)

    async def stop(app: web.Application) -> None:
        endpoint.wheel.close()

    app.on_cleanup.append(stop)


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    """What aiohttp does with a ``/connection/websocket`` request the sniffer left to it: refuse.

    aiohttp's own handshake check answers a bad handshake (``400`` naming the
    problem); the origin guard has already answered a refused origin. A
    handshake it would accept reaches it only when the app is served without
    the sniffer (``orbiter serve`` always has it) and is answered ``400``
    saying so: one WebSocket implementation, not two.
    """
    ws = web.WebSocketResponse()  # (a header that is not ASCII: refused by head_refusal)
    if not ws.can_prepare(request).ok:
        await ws.prepare(request)  # raises aiohttp's 400
    log.warning("websocket from %s: a handshake orbiter did not take", request.remote)
    return error_response(
        400,
        "orbiter did not take this WebSocket handshake: send it as an HTTP/1.1 GET of "
        f"{PATH} without a body, not pipelined behind another request "
        "(orbiter serve reads these before aiohttp)",
    )


class _Endpoint:
    """One node's native WebSocket: takes handshakes, holds the shared wheel."""

    __slots__ = (
        "_ending",
        "frame_rate",
        "guarded",
        "max_message_size",
        "node",
        "outgoing_buffer",
        "ping_interval",
        "pong_timeout",
        "wheel",
    )

    def __init__(self, node: Node) -> None:
        self.node = node
        timing = node.config.session
        self.ping_interval = timing.ping_interval
        self.pong_timeout = timing.pong_timeout
        self.max_message_size = node.config.limits.max_message_size
        self.outgoing_buffer = node.config.limits.outgoing_buffer
        self.frame_rate = node.config.limits.frame_rate
        #: :data:`PATH` is a guarded push route (origin checked): the config's, read once.
        self.guarded = is_guarded(PATH, node)
        resolution = min(self.ping_interval, self.pong_timeout) / 8
        self.wheel = DeadlineWheel(min(1.0, max(0.05, resolution)))
        #: ``node.end_session`` of connections that went away, while it runs.
        self._ending: set[asyncio.Task[None]] = set()

    def route(self, head: bytes, peer: str) -> Claim | None:
        """Claim a WebSocket handshake for :data:`PATH` that passes every check."""
        if not head.startswith(_HEAD_START):
            return None
        parsed = parse_head(head, peer)
        if parsed is None or parsed.path != PATH:
            return None
        problem = undecodable(parsed.headers)
        if problem is not None:
            return lambda takeover: _refuse(takeover, problem)
        if refusal(parsed) is not None:
            return None
        node = self.node
        if self.guarded and not origin_verdict(parsed, node)[1]:
            return None  # aiohttp's origin guard answers 403, counts and logs it
        return lambda takeover: self._take(takeover, parsed)

    def _take(self, takeover: Takeover, head: HandshakeHead) -> None:
        """Answer ``101`` and serve the connection; past the connection limits, close 3003."""
        node = self.node
        peer = peer_address(head.remote, head.headers, node) or "?"
        if peer != head.remote:  # (a dataclass replace costs more than the rest of the head)
            head = replace(head, remote=peer)
        rest = takeover.data[len(takeover.head) :]
        # The protocol keeps the takeover (to release it), not the bytes it was claimed with.
        takeover.data = takeover.head = b""
        takeover.transport.write(switching_protocols(head, cors_headers(head, node)))
        session: ClientSession | None
        try:
            session = node.new_session(peer, request_credentials(head, "websocket"))
        except TooManyConnections as exc:
            session, full = None, str(exc)
        protocol = NativeWebSocket(self, takeover, session, peer)
        takeover.to_protocol(protocol, rest)
        if session is None:
            reason = full.encode()[:120].decode(errors="ignore")
            protocol.close(DisconnectCode.TOO_MANY_CONNECTIONS, reason)

    def end(self, session: ClientSession) -> None:
        """The connection is gone: unsubscribe and forget its session."""
        task = asyncio.get_running_loop().create_task(self.node.end_session(session))
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)


def _refuse(takeover: Takeover, problem: str) -> None:
    """Answer a handshake ``400`` naming ``problem``, and close.

    For a head with a non-ASCII byte in a header the handshake reads
    (:func:`~orbiter.protocol.websocket_handshake.undecodable`), which aiohttp
    fails on.
    """
    log.info("websocket from %s: %s (400)", takeover.peer, problem)
    takeover.transport.write(bad_request(problem))
    takeover.transport.close()


class NativeWebSocket(ClaimedProtocol):
    """One native WebSocket connection, after orbiter's own handshake."""

    __slots__ = (
        "_closing_at",
        "_core",
        "_endpoint",
        "_paused",
        "_peer",
        "_ping_at",
        "_receiving",
        "_seen",
        "_session",
        "_takeover",
        "_throttled",
        "_transport",
        "_window",
        "wheel_bucket",
    )

    def __init__(
        self,
        endpoint: _Endpoint,
        takeover: Takeover | None,
        session: ClientSession | None,
        peer: str,
    ) -> None:
        self._endpoint = endpoint
        self._takeover = takeover
        self._session = session
        self._peer = peer
        self._core: ServerConnection | None = ServerConnection(
            endpoint.max_message_size, unmask_in_c
        )
        self._core.frame_limit = endpoint.frame_rate
        self._transport: asyncio.Transport | None = None
        self._receiving: asyncio.Task[None] | None = None
        #: Reading is paused while a message runs, and while the client is over
        #: ``limits.frame_rate`` (until the next second, when its count starts again).
        #: ``_window`` names the second the count is of, modulo 256 (a small int: no
        #: object per connection; a count 256 s stale is taken for fresh, which can
        #: only throttle a second early).
        self._paused = False
        self._throttled = False
        self._window = -1
        #: When the client was last heard from, a ping went unanswered since, orbiter's
        #: close frame went out (``time.monotonic()``; 0: not).
        self._seen = 0.0
        self._ping_at = 0.0
        self._closing_at = 0.0
        self.wheel_bucket = 0

    # ------------------------------------------------------------------ asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)
        self._seen = time.monotonic()
        endpoint = self._endpoint
        endpoint.wheel.wake_at(self, self._seen + endpoint.ping_interval)
        session = self._session
        if session is not None:
            session.outbox.attach(self, endpoint.node.flusher, self._session_closed)

    def data_received(self, data: bytes) -> None:
        self._seen = now = time.monotonic()
        core = self._core
        if core is None:
            return
        window = int(now) & 0xFF
        if window != self._window and not self._throttled:
            core.frames = 0
            self._window = window
        core.receive_data(data)
        if self._receiving is None:
            self._process()
        elif not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def eof_received(self) -> bool | None:
        return None  # close: a WebSocket ends with a close frame, a FIN alone ends it too

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._core = None
        self._endpoint.wheel.forget(self)
        takeover, self._takeover = self._takeover, None
        if takeover is not None:
            takeover.release(self)
        if self._receiving is None:
            self._end()

    def close_when_idle(self) -> None:
        """Server shutdown: close with the node's reason (or cut, if already closing)."""
        session = self._session
        if session is not None and not session.closed:
            session.close(DisconnectCode.SHUTDOWN, "server shutting down")
        elif self._transport is not None:
            self._transport.abort()

    # ------------------------------------------------------------------ input

    def _process(self) -> None:
        """Handle what was received: each message at once while the session can
        (:meth:`ClientSession.receive_now`: publishes, no task), else the task that runs
        the rest of that message; the messages after it wait for the task's end."""
        session, handled = self._session, False
        data = self._next_message()
        while data is not None and session is not None:
            handled = True
            try:
                rest = session.receive_now(data)
            except Exception:
                log.exception("websocket from %s: receive failed", self._peer)
                rest = None
            if rest is not None:
                task = asyncio.get_running_loop().create_task(self._run(rest))
                self._receiving = task
                task.add_done_callback(self._received)
                break
            data = self._next_message()
        if handled:  # the read's publishes are queued: their commit starts now (Broker.flush)
            self._endpoint.node.broker.flush()
        if self._receiving is None and self._paused and self._transport is not None:
            self._paused = False
            if not self._throttled:
                self._transport.resume_reading()

    def _throttle(self, transport: asyncio.Transport) -> None:
        """Over ``limits.frame_rate``: read nothing more until the second is out."""
        if self._throttled:
            return
        self._throttled = True
        transport.pause_reading()
        session = self._session
        client = "-" if session is None else session.client_id
        self._endpoint.node.counters.limit("limit_frame_rate", client, self._peer)
        asyncio.get_running_loop().call_later(1.0 - time.monotonic() % 1.0, self._unthrottle)

    def _unthrottle(self) -> None:
        """A new second: a new budget of frames; handle what waited, read again."""
        self._throttled = False
        core, transport = self._core, self._transport
        if core is None or transport is None:
            return
        core.frames = 0
        self._window = int(time.monotonic()) & 0xFF
        if self._receiving is None:
            self._process()
        if not self._throttled and not self._paused:
            transport.resume_reading()

    def _next_message(self) -> str | bytes | None:
        """Handle control events up to the next message to run; None if none has come."""
        while True:
            core, transport = self._core, self._transport
            if core is None or transport is None:
                return None
            event = core.next_event()
            out = core.data_to_send()
            if out and not self._write_own(out, transport):
                return None
            if event is None:
                if core.starved:
                    self._throttle(transport)
                return None
            if isinstance(event, Message):
                session = self._session
                if session is not None and not session.closed:
                    return event.data
            elif isinstance(event, PeerClosed):
                transport.close()  # after the reply to its close frame
                return None
            else:
                self._failed(event, core, transport)
                if core.closed:
                    transport.close()
                    return None

    async def _run(self, rest: Coroutine[Any, Any, None]) -> None:
        """Run what is left of a message that needs awaits (:meth:`_process`).

        Reading is paused meanwhile; :meth:`_received` goes on with the messages
        that follow it, so an idle connection has no task.
        """
        await rest
        # The message's publishes are queued: their commit starts now (Broker.flush).
        self._endpoint.node.broker.flush()

    def _received(self, task: asyncio.Task[None]) -> None:
        self._receiving = None
        if not task.cancelled() and task.exception() is not None:
            log.error("websocket from %s: receive failed", self._peer, exc_info=task.exception())
        if self._transport is None:
            self._end()
        else:
            self._process()  # what came since the task's last look

    def _failed(self, event: Failed, core: ServerConnection, transport: asyncio.Transport) -> None:
        if event.code == MESSAGE_TOO_BIG:
            self._endpoint.node.counters["limit_message_size"] += 1
        log.info("websocket from %s: %s (close %d)", self._peer, event.reason, event.code)
        if not core.closed:  # the closing handshake goes on
            self._closing(time.monotonic())

    # ------------------------------------------------------------------ output (Sink)

    def backlog(self) -> int:
        transport = self._transport
        return 0 if transport is None else transport.get_write_buffer_size()

    def write(self, messages: list[bytes]) -> None:
        transport, core = self._transport, self._core
        if transport is not None and core is not None and core.open and not transport.is_closing():
            transport.write(_frame_messages(messages))

    def write_batch(self, batch: SharedBatch) -> None:
        transport, core = self._transport, self._core
        if transport is not None and core is not None and core.open and not transport.is_closing():
            transport.write(batch.framed(_FRAMING, _frame_batch))

    def close(self, code: int, reason: str) -> None:
        """Send a close frame; the client has ``session.pong_timeout`` to answer it."""
        transport, core = self._transport, self._core
        if transport is None or core is None:
            return
        frame = core.close(code, reason)
        if frame:
            transport.write(frame)
            self._closing(time.monotonic())

    def _session_closed(self) -> None:
        """The session's outbox closed (after what it queued was written)."""
        session = self._session
        if session is not None and session.close_code is not None:  # closed by the server
            self.close(session.close_code, session.close_reason)

    def _write_own(self, data: bytes, transport: asyncio.Transport) -> bool:
        """Write what orbiter sends on its own (pongs, pings, close replies) within the bound.

        False, and the client cut as a slow consumer (close 3001, a log line, the
        ``limit_outgoing_buffer`` counter), if the bytes not yet sent (the
        transport's and the outbox's) would pass ``limits.outgoing_buffer``. The
        core answers only the latest ping of what one read brought, so a read
        makes at most one pong. The native replies are bounded by the outbox; the
        close frame that starts orbiter's own closing handshake (:meth:`close`),
        once per connection, is not held back.
        """
        session = self._session
        unsent = transport.get_write_buffer_size() + len(data)
        if session is not None:
            unsent += session.outbox.queued_bytes
        if unsent <= self._endpoint.outgoing_buffer:
            transport.write(data)
            return True
        log.warning(
            "websocket from %s: %d bytes unsent, over limits.outgoing_buffer (%d): "
            "the client does not read what it asks for (pongs, replies)",
            self._peer,
            unsent,
            self._endpoint.outgoing_buffer,
        )
        if session is not None and not session.closed:
            session.close(DisconnectCode.SLOW_CONSUMER, "outgoing buffer full")  # counted
        else:  # closing already (counted then, if for this): nothing more will be read
            transport.abort()
        return False

    def _closing(self, now: float) -> None:
        self._closing_at = now
        self._endpoint.wheel.wake_at(self, now + self._endpoint.pong_timeout)

    # ------------------------------------------------------------------ deadlines

    def on_deadline(self, now: float) -> float | None:
        """The wheel's call: ping an idle client, cut one that does not answer.

        One ping after ``session.ping_interval`` seconds without a byte from the
        client (browsers answer pings by themselves); no byte within
        ``session.pong_timeout`` of it, and the connection is cut, so a client
        that vanished without a FIN is freed within interval + timeout. The same
        timeout cuts a client that does not answer orbiter's close frame (a slow
        consumer's close frame waits behind what it does not read).
        """
        transport, core = self._transport, self._core
        if transport is None or core is None:
            return None
        endpoint = self._endpoint
        timeout = endpoint.pong_timeout
        if self._closing_at:
            if now < self._closing_at + timeout:
                return self._closing_at + timeout
            log.info("websocket from %s: no close frame back in %g s; cut", self._peer, timeout)
            transport.abort()
            return None
        if self._receiving is not None or self._throttled:
            # Reading is paused while commands run (or the client is over
            # limits.frame_rate), so a pong may be waiting unread.
            self._ping_at = 0.0
            return now + endpoint.ping_interval
        if self._ping_at:
            if self._seen >= self._ping_at:
                self._ping_at = 0.0
            elif now < self._ping_at + timeout:
                return self._ping_at + timeout
            else:
                log.info("websocket from %s: no pong in %g s; cut", self._peer, timeout)
                transport.abort()
                return None
        idle_until = self._seen + endpoint.ping_interval
        if now < idle_until:
            return idle_until
        if not self._write_own(core.ping(), transport):
            return None if transport.is_closing() else max(self._closing_at, now) + timeout
        self._ping_at = now
        return now + timeout

    # ------------------------------------------------------------------ end

    def _end(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            self._endpoint.end(session)
