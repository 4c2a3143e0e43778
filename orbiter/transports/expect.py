"""``Expect: 100-continue`` judged on the request head, before the client sends the body.

aiohttp calls a route's expect handler before any middleware, and its
default answers ``100 Continue`` to every such head, so a client would
upload a body only to be refused after it (413 over the size limit, 401
without the API key). :func:`expect_handler` makes a route's handler that
judges first:

- a head the front middleware refuses (:func:`~orbiter.transports.request_checks.head_refusal`:
  a ``Host`` not allowed) gets no ``100 Continue``; the middleware answers
  it ``400`` without reading the body;
- an ``Expect`` other than ``100-continue`` is answered ``417``;
- the route's ``judge`` may answer the head (its refusal, in the route's
  own wording); if it does not, ``100 Continue`` is sent and the handler
  runs. HTTP/1.0 clients get no interim answer, as aiohttp's default does.

Used by ``/api/publish`` and ``/api/event`` (``http/api.py``) and by every
SockJS mount (native, ``/stomp/sockjs``, ``/tcp/sockjs``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from orbiter.transports.app_keys import NODE
from orbiter.transports.request_checks import head_refusal

#: A route's verdict on a head: its refusal, or None to ask for the body.
Judge = Callable[[web.Request], web.StreamResponse | None]
#: The route's ``417`` answer, given its message.
Unknown = Callable[[web.Request, str], web.StreamResponse]
ExpectHandler = Callable[[web.Request], Awaitable[web.StreamResponse | None]]

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def expect_handler(judge: Judge, unknown: Unknown) -> ExpectHandler:
    """An aiohttp ``expect_handler`` that asks ``judge`` before sending ``100 Continue``."""

    async def expect(request: web.Request) -> web.StreamResponse | None:
        if request.version < (1, 1):
            return None
        if head_refusal(request, request.app[NODE]) is not None:
            return None  # the front middleware answers 400
        value = request.headers.get("Expect", "")
        if value.lower() != "100-continue":
            return unknown(request, f"unknown Expect: {value[:100]!r}")
        refusal = judge(request)
        if refusal is not None:
            return refusal
        await request.writer.write(_CONTINUE)
        request.writer.output_size = 0  # as aiohttp's own expect handler: no body yet
        return None

    return expect
