"""The push routes' middleware: the origin rule, CORS, and ``limits.max_channels`` answers.

:func:`origin_guard` answers ``403`` to a push request (:func:`is_guarded`)
from a page whose origin may not use this server, and ``503`` with
``Retry-After`` to one that would open a channel past ``limits.max_channels``;
:func:`add_cors_headers` names an allowed cross-origin page in the answer.
The rules themselves are :mod:`orbiter.transports.request_checks`, which the
native WebSocket, SockJS's hixie-76 handshakes and the publish fast path call
without aiohttp's middleware.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from orbiter.engine.base import TooManyStreams
from orbiter.transports.app_keys import NODE
from orbiter.transports.errors import error_response
from orbiter.transports.request_checks import (
    channels_full_answer,
    cors_headers,
    is_guarded,
    origin_refusal,
)


def check_origin(request: web.Request) -> web.Response | None:
    """None if the request's page origin may use this server, else the 403 to answer."""
    refusal = origin_refusal(request, request.app[NODE])
    return None if refusal is None else error_response(403, refusal)


def _guarded(request: web.Request) -> bool:
    return is_guarded(request.path, request.app[NODE])


@web.middleware
async def origin_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse push requests from pages of origins that are not allowed.

    Also answers 503 when a request (a publish, a poll, a history read)
    would open a channel past ``limits.max_channels``.
    """
    if _guarded(request):
        refusal = check_origin(request)
        if refusal is not None:
            return refusal
    try:
        return await handler(request)
    except TooManyStreams as exc:
        answer = channels_full_answer(exc, request.method, request.path, request.remote)
        return error_response(*answer)


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: CORS for allowed cross-origin push requests."""
    if "Origin" not in request.headers or "Access-Control-Allow-Origin" in response.headers:
        return
    response.headers.update(cors_headers(request, request.app[NODE]))
