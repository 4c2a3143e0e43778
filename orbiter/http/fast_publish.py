"""The HTTP publish fast path: keep-alive, pipelined ``POST /api/publish`` without aiohttp.

An app server that publishes one HTTP request per message would pay aiohttp's
request machinery (parser, request and response objects, middleware, a task
per request) several times over orbiter's own work (the figures:
``docs/benchmarks.md``). :func:`fast_publish_router` claims (see
:mod:`orbiter.transports.sniffing`) connections whose first request is a plain
``POST /api/publish HTTP/1.1`` with a ``Content-Length`` body, and
:class:`FastPublishProtocol` serves them on a bare :class:`asyncio.Protocol`:
each request is judged by the strict parser :mod:`orbiter.protocol.http_publish`,
checked and published by the same functions as aiohttp's handler
(:func:`orbiter.http.api_rules.check_api_key`,
:func:`orbiter.http.api_rules.publish_body_then`),
and answered in order; the answers to one read go out in one write.

The memory engine publishes at once (:meth:`~orbiter.engine.base.Broker.publish_at_once`),
so no coroutine or task is made per request. An engine that queues
publications (:meth:`~orbiter.engine.base.Broker.publish_then`, the SQLite
engine's group commit) has every request of a read queued at once, so
pipelined requests share a commit, which starts in the read's own iteration
(:meth:`~orbiter.engine.base.Broker.flush`); the engine tells each request's
outcome (the SQLite engine from its commit's report, with no future or task in
between), and the read's answers are written once all are told, while reading
pauses. If an engine must be awaited, the rest of the publish runs in a task,
and later requests wait in the buffer. Answers stay in order.

Any request the parser does not take (another method or path, HTTP/1.0,
``Transfer-Encoding``, ``Expect``, an odd header, a body over the limit, a
``Host`` or ``Content-Type`` aiohttp's routes refuse: :func:`admit_rule`)
goes to aiohttp from its first byte, after every earlier answer was written,
with the connection: aiohttp answers it, and everything after it, as it
answers any request. Fan-out is not touched: publications reach
:class:`~orbiter.services.pubsub.PubSub` exactly as from the handler.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Mapping
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp.http import SERVER_SOFTWARE

from orbiter.engine.base import PublishFailed, TooManyStreams
from orbiter.http.api import json_type_refusal, refusal_answer
from orbiter.http.api_rules import (
    ApiError,
    Outcome,
    Told,
    answer_of,
    check_api_key,
    publish_body_then,
)
from orbiter.protocol.http_publish import (
    REQUEST_LINE,
    Admit,
    Handover,
    PublishHead,
    PublishParser,
    judge_head,
)
from orbiter.transports.errors import error_payload
from orbiter.transports.request_checks import channels_full_answer, forwarded_peer, host_allowed
from orbiter.transports.sniffing import Claim, ClaimedProtocol, RawRouter, Takeover

if TYPE_CHECKING:
    from orbiter.node import Node

log = logging.getLogger("orbiter.http")

#: Seconds an idle keep-alive connection stays open (aiohttp's default, as for its own).
KEEPALIVE_TIMEOUT = 3630.0
#: Requests of one connection queued for an engine at once (pipelined ones); reading
#: pauses until they are answered.
MAX_WAITING = 64
#: A request's response; None until the engine tells it (:meth:`FastPublishProtocol._told`);
#: or what publishes it once awaited.
_Waiting = bytes | Awaitable[dict[str, Any]] | None
_OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
_SERVER = b"Server: " + SERVER_SOFTWARE.encode("ascii") + b"\r\n"
_JSON_LENGTH = b"Content-Type: application/json\r\nContent-Length: "
_INTERNAL_ERROR_HEAD = (
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: "
)
_INTERNAL_ERROR = b"500 Internal Server Error\n\nServer got itself in trouble"
_NO_HEADERS: Mapping[str, str] = {}


class _DateHeader:
    """The ``Date`` and ``Server`` lines, formatted once a second."""

    __slots__ = ("_lines", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._lines = b""

    def lines(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._lines = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n" + _SERVER
        return self._lines


def admit_rule(node: Node) -> Admit:
    """The heads the fast path serves: a ``Host`` and ``Content-Type`` aiohttp's routes allow.

    Others go to aiohttp, whose host guard and API answer them (400, 415).
    """

    def admit(head: PublishHead) -> bool:
        return host_allowed(head.host, node) and json_type_refusal(node, head.content_type) is None

    return admit


def fast_publish_router(node: Node) -> RawRouter:
    """Claims connections whose first request head is one :func:`judge_head` takes and admits."""
    dates = _DateHeader()
    max_body = node.config.limits.max_http_body
    admit = admit_rule(node)

    def take(takeover: Takeover) -> None:
        takeover.to_protocol(FastPublishProtocol(takeover, node, dates), takeover.data)

    def route(head: bytes, peer: str) -> Claim | None:
        if not head.startswith(REQUEST_LINE):
            return None
        judged = judge_head(head, max_body)
        if isinstance(judged, Handover) or not admit(judged):
            return None
        return take

    return route


class FastPublishProtocol(ClaimedProtocol):
    """Serves one claimed connection's publish requests, until one is not (then aiohttp does)."""

    __slots__ = (
        "_begun",
        "_buffered",
        "_busy",
        "_chunks",
        "_closing",
        "_dates",
        "_eof",
        "_idle_timer",
        "_last_read",
        "_loop",
        "_missing",
        "_node",
        "_parser",
        "_takeover",
        "_task",
        "_tell",
        "_transport",
        "_waiting",
        "_wanted",
        "_write_paused",
    )

    def __init__(self, takeover: Takeover, node: Node, dates: _DateHeader) -> None:
        self._takeover = takeover
        self._transport = takeover.transport
        self._node = node
        self._dates = dates
        self._parser = PublishParser(node.config.limits.max_http_body, admit_rule(node))
        self._loop = asyncio.get_running_loop()
        #: What was read and not yet answered (the start of a request), in pieces, and its size;
        #: it is judged again once ``_wanted`` bytes are here (a long body is not re-joined
        #: on every read).
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._wanted = 0
        #: When the first byte of the request kept unanswered came (``_last_read`` then; 0:
        #: none is kept), for ``limits.body_deadline``.
        self._begun = 0.0
        #: A publish suspended (not the memory engine): its task answers, then serving resumes.
        self._busy = False
        self._task: asyncio.Task[None] | None = None
        #: The read whose requests wait for the engine, and how many of them (and the read
        #: itself, until flushed) are still to be told; :meth:`_told`, made once.
        self._waiting: list[tuple[PublishHead, _Waiting]] = []
        self._missing = 0
        self._tell: Told = self._told
        self._write_paused = False
        self._closing = False
        self._eof = False
        self._last_read = self._loop.time()
        self._idle_timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._idle_timer = self._loop.call_later(
            self._node.config.limits.body_timeout, self._check_idle
        )

    def data_received(self, data: bytes) -> None:
        self._last_read = self._loop.time()
        if self._busy or self._buffered + len(data) < self._wanted:
            self._chunks.append(data)
            self._buffered += len(data)
            return
        self._serve(self._unread(data))

    def eof_received(self) -> bool | None:
        self._eof = True
        if self._busy:
            return True  # the suspended publish still answers; then the connection closes
        return self._end_of_input()

    def connection_lost(self, exc: Exception | None) -> None:
        self._unread()
        self._stop_timer()
        self._takeover.release(self)

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()

    # ClaimedProtocol

    def close_when_idle(self) -> None:
        if self._busy:
            self._closing = True
        else:
            self._transport.close()

    # Serving

    def _serve(self, buffer: bytes) -> None:
        """Answer every whole request in ``buffer``; keep the rest for the next read."""
        transport = self._transport
        out: list[bytes] = []
        waiting: list[tuple[PublishHead, _Waiting]] = []
        pos, size, parse = 0, len(buffer), self._parser.parse
        lines = self._dates.lines()  # (the Date line, read once for the requests of a read)
        while pos < size:
            parsed = parse(buffer, pos)
            if parsed is None:
                break
            if isinstance(parsed, Handover):
                if waiting:
                    break  # handed over once the answers before it are out
                if out:
                    transport.write(b"".join(out))
                self._hand_over(buffer[pos:])
                return
            head, body, pos = parsed
            response = self._answer(head, body, lines, len(waiting))
            if waiting or not isinstance(response, bytes):
                # The engine must wait: this answer and those after it come later.
                if response is None:  # queued: told (_told) once the engine knows
                    self._missing += 1
                waiting.append((head, response))
                if head.close or not isinstance(response, bytes | None):
                    break  # a coroutine publishes when awaited: later requests wait for it
                if len(waiting) >= MAX_WAITING:
                    break
                continue
            out.append(response)
            if head.close:
                transport.write(b"".join(out))
                transport.close()
                return
        if waiting:  # answered once the engine has, then what is kept and came meanwhile
            if out:
                transport.write(b"".join(out))
            self._waiting = waiting
            self._begun = self._last_read if pos < size else 0.0
            self._keep(buffer[pos:], 0)
            self._busy = True
            self._update_reading()
            # The read's publications are all queued: their commit starts now, not at the
            # next iteration (Broker.flush), so the answers come an iteration sooner; an
            # engine may even tell them within this call.
            self._missing += 1  # (until flushed: answered once every one was told)
            self._node.broker.flush()
            self._missing -= 1
            if not self._missing:
                self._when_told()
            return
        if pos < size:
            if pos or not self._begun:  # a request began in this read
                self._begun = self._last_read
            self._keep(buffer[pos:] if pos else buffer, self._parser.wanted)
        else:
            self._begun = 0.0
        if out:
            transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _answer(
        self, head: PublishHead, body: bytes, lines: bytes, slot: int
    ) -> bytes | Awaitable[dict[str, Any]] | None:
        """The response to a request; None if the engine queued it (request ``slot`` of
        the read is told to :meth:`_told`); or what publishes it once awaited."""
        try:
            check_api_key(self._node, head.x_api_key, head.authorization)
            answer = publish_body_then(self._node.pubsub, body, self._tell, slot)
        except Exception as exc:
            return self._failure(exc, head)
        if isinstance(answer, dict):
            return self._ok(answer, head.close, lines)
        assert not isinstance(answer, asyncio.Future)  # (told instead)
        return answer

    def _told(self, slot: int, outcome: Outcome) -> None:
        """The engine told how request ``slot`` of the waiting read went: its response is
        made; once every one is, the read's responses are written."""
        waiting = self._waiting
        head = waiting[slot][0]
        if isinstance(outcome, BaseException):
            response = self._failure(outcome, head)  # type: ignore[arg-type]
        else:
            response = self._ok(answer_of(outcome), head.close, self._dates.lines())
        waiting[slot] = (head, response)
        self._missing -= 1
        if not self._missing:
            self._when_told()

    def _when_told(self) -> None:
        """Every queued request of the waiting read was told: write the answers, unless a
        request that must be awaited ends the read (a task answers it, then the rest)."""
        waiting, self._waiting = self._waiting, []
        if isinstance(waiting[-1][1], bytes):
            self._answered(waiting, [response for _, response in waiting])  # type: ignore[misc]
        else:
            self._task = self._loop.create_task(self._finish(waiting))

    async def _finish(self, waiting: list[tuple[PublishHead, _Waiting]]) -> None:
        """A read that ends with a request the engine could not queue (a coroutine, which
        publishes once awaited): answer it after those before it, in order."""
        responses = []
        for head, answer in waiting:
            if isinstance(answer, bytes):
                responses.append(answer)
                continue
            assert answer is not None
            try:
                answer_payload = answer_of(await answer)
                responses.append(self._ok(answer_payload, head.close, self._dates.lines()))
            except Exception as exc:
                responses.append(self._failure(exc, head))
        self._answered(waiting, responses)

    def _answered(
        self, waiting: list[tuple[PublishHead, _Waiting]], responses: list[bytes]
    ) -> None:
        """Write the answers of ``waiting``, then serve what came meanwhile."""
        self._busy = False
        self._task = None
        transport = self._transport
        if transport.is_closing():
            return
        transport.write(responses[0] if len(responses) == 1 else b"".join(responses))
        if waiting[-1][0].close or self._closing:
            transport.close()
            return
        self._update_reading()
        buffer = self._unread()
        if buffer:
            self._serve(buffer)
        if self._eof and not self._busy and not transport.is_closing() and not self._end_of_input():
            transport.close()

    def _ok(self, payload: dict[str, Any], close: bool, lines: bytes) -> bytes:
        """A 200 answer; ``lines``: the ``Date`` and ``Server`` lines (``_DateHeader.lines``)."""
        body = orjson.dumps(payload)
        connection = b"Connection: close\r\n\r\n" if close else b"\r\n"
        return b"%s%d\r\n%s%s%s" % (_OK_HEAD, len(body), lines, connection, body)

    def _failure(self, exc: Exception, head: PublishHead) -> bytes:
        """The answer aiohttp's middleware gives for ``exc``: the same rule functions."""
        if isinstance(exc, ApiError):
            status, message = refusal_answer(exc, "POST", "/api/publish", self._peer(head))
            return self._error(status, message, close=head.close)
        if isinstance(exc, TooManyStreams):
            answer = channels_full_answer(exc, "POST", "/api/publish", self._peer(head))
            return self._error(*answer, close=head.close)
        if isinstance(exc, PublishFailed):  # a full disk: answered, the connection goes on
            exc = ApiError(503, str(exc))
            status, message = refusal_answer(exc, "POST", "/api/publish", self._peer(head))
            return self._error(status, message, close=head.close)
        log.exception("POST /api/publish from %s failed", self._peer(head))
        self._closing = True
        return self._response(
            b"500 Internal Server Error", b"text/plain; charset=utf-8", _INTERNAL_ERROR, True
        )

    def _error(
        self, status: int, message: str, headers: Mapping[str, str] = _NO_HEADERS, *, close: bool
    ) -> bytes:
        body = orjson.dumps(error_payload(status, message))
        status_line = b"%d %s" % (status, HTTPStatus(status).phrase.encode())
        extra = b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in headers.items())
        return self._response(status_line, b"application/json", body, close, extra)

    def _response(
        self, status: bytes, content_type: bytes, body: bytes, close: bool, extra: bytes = b""
    ) -> bytes:
        connection = b"Connection: close\r\n" if close else b""
        return b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s%s%s\r\n%s" % (
            status,
            content_type,
            len(body),
            self._dates.lines(),
            extra,
            connection,
            body,
        )

    def _peer(self, head: PublishHead) -> str | None:
        """The client, for logs: the forwarded one when the peer is a trusted proxy."""
        return forwarded_peer(self._takeover.peer, head.forwarded_for, self._node)

    # The connection

    def _hand_over(self, data: bytes) -> None:
        """Give the connection to aiohttp from the first byte of the request in ``data``."""
        self._stop_timer()
        inner = self._takeover.to_aiohttp(self, data)
        if self._eof and not inner.eof_received():
            self._transport.close()

    def _end_of_input(self) -> bool:
        """The client sent EOF and nothing is in progress: True to keep the socket half-open."""
        buffer = self._unread()
        if buffer:  # a request cut short: aiohttp answers it as it would have
            self._stop_timer()
            return bool(self._takeover.to_aiohttp(self, buffer).eof_received())
        return False

    def _keep(self, rest: bytes, wanted: int) -> None:
        """Keep ``rest`` (the start of a request) until ``wanted`` bytes of it are here."""
        self._chunks = [rest]
        self._buffered = len(rest)
        self._wanted = wanted

    def _unread(self, data: bytes = b"") -> bytes:
        """Everything kept, then ``data``, as one piece; nothing is kept after."""
        chunks = self._chunks
        if chunks:
            chunks.append(data)
            data = b"".join(chunks)
            self._chunks = []
        self._buffered = self._wanted = 0
        return data

    def _update_reading(self) -> None:
        transport = self._transport
        if transport.is_closing():
            return
        if self._busy or self._write_paused:
            if transport.is_reading():
                transport.pause_reading()
        elif not transport.is_reading():
            transport.resume_reading()

    def _check_idle(self) -> None:
        """Close an idle connection, and one whose request stopped arriving midway or
        trickles in past ``limits.body_deadline``.

        Woken at least every ``limits.body_timeout``, exactly that long after the
        last read, and at a kept request's deadline, so a stalled or trickled
        request is cut on time with no work per read.
        """
        now = self._loop.time()
        idle = now - self._last_read
        limits = self._node.config.limits
        stall, deadline = limits.body_timeout, limits.body_deadline
        pending = not self._busy and self._buffered
        if pending and (idle >= stall or now - self._begun >= deadline - 1e-3):
            self._idle_timer = None
            if idle >= stall:
                counter, why = "limit_body_timeout", f"no byte of the request for {stall:g} s"
                key = "limits.body_timeout"
            else:
                counter, key = "limit_body_deadline", "limits.body_deadline"
                why = f"the request was not all here within {deadline:g} s"
            self._node.refused(
                counter,
                "POST /api/publish from %s: %s (%s); dropped",
                self._takeover.peer,
                why,
                key,
            )
            self._transport.write(self._error(408, f"{why} ({key})", close=True))
            self._transport.close()
        elif idle >= KEEPALIVE_TIMEOUT and not self._busy:
            self._idle_timer = None
            self._transport.close()
        else:
            wait = stall - idle if idle < stall else stall
            if pending:
                wait = min(wait, self._begun + deadline - now)
            self._idle_timer = self._loop.call_later(wait, self._check_idle)

    def _stop_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
