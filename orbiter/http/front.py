"""The front middleware: what every aiohttp route does first, in one layer.

:func:`front` takes the client's address from a trusted proxy's
``X-Forwarded-For`` (:func:`~orbiter.transports.request_checks.peer_address`),
answers ``400`` to a head that may not be answered
(:func:`~orbiter.transports.request_checks.head_refusal`: a ``Host`` not allowed, a
WebSocket handshake header that is not ASCII), and watches the body: a
request whose body is not all here when its handler starts fails its next
read with :class:`BodyTimedOut` once no byte has arrived for
``limits.body_timeout`` seconds, or once ``limits.body_deadline`` seconds
have passed since the handler started with the body still unfinished (a
body trickled a byte every few seconds is never idle for long), and is
answered 408 and closed (or only closed, if an answer was begun). Requests
whose body came with the head, as almost all do, are not watched.

Why a total deadline and not a minimum rate: one number says how long any
client can hold a request open with its body (``max_connections_per_ip``
such requests for ``body_deadline`` seconds at most), whatever length it
declares; a rate would let a large declared body hold its request longer.
The default (60 s) moves the default ``max_http_body`` (1 MiB) at 17 KiB/s,
slower than any link an app server or a browser sends over.

A client that disconnects while its request is read (``ConnectionResetError``
or aiohttp's "Connection closed." from the body reader) is one INFO line,
not aiohttp's ERROR with a traceback: anyone can cause it, so it must not be
able to fill the log. One middleware, not three: each layer costs every
request a coroutine.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import StreamReader, web
from aiohttp.typedefs import Handler, Middleware

from orbiter.transports.app_keys import NODE
from orbiter.transports.errors import error_response
from orbiter.transports.request_checks import head_refusal, peer_address

log = logging.getLogger("orbiter.http")

#: Checks per ``body_timeout``: a stalled body is cut between 1 and 1.25 times it after its
#: last byte.
_CHECKS_PER_TIMEOUT = 4


class BodyTimedOut(TimeoutError):
    """A request body stalled for ``limits.body_timeout`` seconds, or took longer in all
    than ``limits.body_deadline``; ``counter`` names the limit's counter.

    A :class:`TimeoutError`, so that aiohttp's own reads of what is left of a
    body after its handler (lingering) end quietly on it.
    """

    def __init__(self, message: str, counter: str) -> None:
        super().__init__(message)
        self.counter = counter


class _BodyWatch:
    """Fails a request body's reads once it has stalled for ``timeout`` seconds, or is
    unfinished ``deadline`` seconds after the watch began."""

    __slots__ = (
        "_deadline",
        "_due",
        "_handle",
        "_interval",
        "_loop",
        "_payload",
        "_quiet_since",
        "_seen",
        "_timeout",
    )

    def __init__(self, payload: StreamReader, timeout: float, deadline: float) -> None:
        self._payload = payload
        self._timeout = timeout
        self._deadline = deadline
        self._interval = timeout / _CHECKS_PER_TIMEOUT
        self._loop = asyncio.get_running_loop()
        self._seen = payload.total_bytes
        self._quiet_since = now = self._loop.time()
        #: When the body must be all here.
        self._due = now + deadline
        self._handle: asyncio.TimerHandle | None = self._loop.call_at(
            min(now + self._interval, self._due), self._check
        )

    @property
    def fired(self) -> bool:
        return isinstance(self._payload.exception(), BodyTimedOut)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        payload = self._payload
        if payload.is_eof() or payload.exception() is not None:
            return
        now = self._loop.time()
        if now >= self._due - 1e-3:
            payload.set_exception(
                BodyTimedOut(
                    f"the request body was not all here within {self._deadline:g} s "
                    "(limits.body_deadline)",
                    "limit_body_deadline",
                )
            )
            return
        # Bytes arrived, or some wait unread (the handler, not the client, is behind).
        if payload.total_bytes != self._seen or payload._size:
            self._seen = payload.total_bytes
            self._quiet_since = now
        elif now - self._quiet_since >= self._timeout - 1e-3:
            payload.set_exception(
                BodyTimedOut(
                    f"no byte of the request body for {self._timeout:g} s (limits.body_timeout)",
                    "limit_body_timeout",
                )
            )
            return
        self._handle = self._loop.call_at(min(now + self._interval, self._due), self._check)


def front(body_timeout: float, body_deadline: float) -> Middleware:
    """The middleware (see the module docstring)."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        node = request.app[NODE]
        peer = peer_address(request.remote, request.headers, node)
        if peer is not None and peer != request.remote:
            request = request.clone(remote=peer)
        refusal = head_refusal(request, node)
        if refusal is not None:
            return error_response(400, refusal)
        payload = request.content
        watch = None if payload.is_eof() else _BodyWatch(payload, body_timeout, body_deadline)
        try:
            return await handler(request)
        except BodyTimedOut as exc:
            if watch is None or not watch.fired:
                raise
            return _timed_out(request, exc)
        except (ConnectionResetError, RuntimeError) as exc:
            transport = request.transport
            if transport is not None and not transport.is_closing():
                raise
            log.info(
                "%s %s from %s: the client left before the request was read (%s)",
                request.method,
                request.path[:200],
                request.remote,
                exc,
            )
            return web.Response(status=400)  # not sent: the connection is gone
        finally:
            if watch is not None:
                watch.stop()

    return guard


def _timed_out(request: web.Request, exc: BodyTimedOut) -> web.StreamResponse:
    """408 and close, for a request whose body stalled or was too slow; only close if an
    answer was begun."""
    reason = str(exc)
    request.app[NODE].refused(
        exc.counter,
        "%s %s from %s: %s; dropped",
        request.method,
        request.path[:200],
        request.remote,
        reason,
    )
    transport = request.transport
    if request.writer.output_size > 0 and transport is not None:
        transport.close()  # the answer already begun cannot be finished
    if request.path.startswith("/api/"):
        response = error_response(408, reason)
    else:
        response = web.Response(status=408, text=reason + "\n")
    response.force_close()
    return response
