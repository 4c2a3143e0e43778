"""SockJS over HTTP on aiohttp: routing, headers, and the HTTP receivers and senders.

One aiohttp route takes everything under the prefix; :func:`urls.parse`
says what was asked for. This module sets the headers the protocol wants
(CORS with credentials, no caching for session URLs, a year of caching for
``OPTIONS`` and ``iframe.html``, the ``JSESSIONID`` cookie for services that
need it), turns each envelope's receiving request into a :class:`Receiver`
for the session, and hands ``xhr_send``/``jsonp_send`` bodies to it. On a
Redis engine, a request for a session this node does not hold goes to
``remote.py``, which relays it to the node that does.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import logging
import re
import secrets
import time
from email.utils import formatdate
from urllib.parse import parse_qsl

import orjson
from aiohttp import HttpVersion11, web
from multidict import CIMultiDict

from orbiter.protocol.sockjs import urls
from orbiter.protocol.sockjs.envelopes import CALLBACK, ENVELOPES, Envelope
from orbiter.protocol.sockjs.frames import (
    BROKEN_JSON,
    MESSAGE_TOO_BIG,
    PAYLOAD_EXPECTED,
    Frame,
    PayloadError,
    decode_messages,
    largest_message_size,
)
from orbiter.transports.expect import expect_handler
from orbiter.transports.sockjs.endpoint import Endpoint, SockJSServer
from orbiter.transports.sockjs.remote import RemoteSessions
from orbiter.transports.sockjs.websocket import raw_websocket, sockjs_websocket

log = logging.getLogger("orbiter.sockjs")

NO_CACHE = "no-store, no-cache, no-transform, must-revalidate, max-age=0"
ONE_YEAR = 31_536_000
#: A JSESSIONID value echoed back as is; anything else becomes "dummy".
_COOKIE_VALUE = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,256}")

_IFRAME_PAGE = """<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script src="%s"></script>
  <script>
    document.domain = document.domain;
    SockJS.bootstrap_iframe();
  </script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>
"""


class SockJSHandler:
    """The aiohttp handler for everything under one prefix."""

    def __init__(self, server: SockJSServer, prefix: str) -> None:
        self.server = server
        self.prefix = prefix
        self._services = frozenset(name for name in server.endpoints if name)
        #: On a Redis engine: each endpoint's sessions held by other nodes (``remote.py``).
        self.remote: dict[str, RemoteSessions] = {}
        #: aiohttp's expect handler for the prefix: a body over the limit is refused first (413).
        self.expect = expect_handler(self._judge_head, _unknown_expect)

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        tail = request.rel_url.raw_path[len(self.prefix) :]
        name, tail = urls.split_service(tail, self._services)
        endpoint = self.server.endpoints.get(name)
        target = urls.parse(tail)
        if endpoint is None or target is None:
            return _error(request, 404, "Not found.\n")
        if isinstance(target, urls.SessionUrl):
            return await self._session_url(request, endpoint, target)
        if isinstance(target, urls.Info):
            return _info(request, endpoint)
        if request.method not in ("GET", "HEAD"):
            return _not_allowed(request, "GET, HEAD")
        if isinstance(target, urls.Greeting):
            return web.Response(
                text="Welcome to SockJS!\n", headers={"Content-Type": "text/plain; charset=UTF-8"}
            )
        if isinstance(target, urls.Iframe):
            return _iframe(request, endpoint)
        if not endpoint.options.websocket:
            return _error(request, 404, "WebSocket is disabled.\n")
        return await raw_websocket(request, endpoint)

    def _judge_head(self, request: web.Request) -> web.StreamResponse | None:
        tail = request.rel_url.raw_path[len(self.prefix) :]
        endpoint = self.server.endpoints.get(urls.split_service(tail, self._services)[0])
        return None if endpoint is None else _too_large(request, endpoint)

    def websocket_endpoint(self, path: str) -> Endpoint | None:
        """The endpoint whose session WebSocket URL ``path`` (raw) is, if it offers WebSocket."""
        if not path.startswith(self.prefix):
            return None
        name, tail = urls.split_service(path[len(self.prefix) :], self._services)
        endpoint = self.server.endpoints.get(name)
        target = urls.parse(tail)
        if endpoint is None or not endpoint.options.websocket:
            return None
        if isinstance(target, urls.SessionUrl) and target.transport == "websocket":
            return endpoint
        return None

    async def _session_url(
        self, request: web.Request, endpoint: Endpoint, target: urls.SessionUrl
    ) -> web.StreamResponse:
        transport, method = target.transport, request.method
        if transport == "websocket":
            if not endpoint.options.websocket:
                return _error(request, 404, "WebSocket is disabled.\n")
            if method != "GET":
                return _not_allowed(request, "GET")
            return await sockjs_websocket(request, endpoint)
        if transport in ("xhr_send", "jsonp_send"):
            if method == "OPTIONS" and transport == "xhr_send":
                return _preflight(request, "OPTIONS, POST")
            if method != "POST":
                return _not_allowed(request, "OPTIONS, POST" if transport == "xhr_send" else "POST")
            remote = self.remote.get(endpoint.name)
            jsonp = transport == "jsonp_send"
            return await _send(request, endpoint, target.session, remote, jsonp=jsonp)
        envelope = ENVELOPES[transport]
        if method == "OPTIONS" and envelope.method == "POST":
            return _preflight(request, "OPTIONS, POST")
        if method != envelope.method:
            return _not_allowed(request, "OPTIONS, POST" if envelope.method == "POST" else "GET")
        remote = self.remote.get(endpoint.name)
        return await _receive(request, endpoint, envelope, target.session, remote)


# --------------------------------------------------------------------------- headers


def _cors(request: web.Request, headers: CIMultiDict[str]) -> None:
    origin = request.headers.get("Origin")
    if origin:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Allow-Credentials"] = "true"
        headers["Vary"] = "Origin"
    else:
        headers["Access-Control-Allow-Origin"] = "*"
    wanted = request.headers.get("Access-Control-Request-Headers")
    if wanted:
        headers["Access-Control-Allow-Headers"] = wanted


def _cache_for_a_year(headers: CIMultiDict[str]) -> None:
    headers["Cache-Control"] = f"public, max-age={ONE_YEAR}"
    headers["Expires"] = formatdate(time.time() + ONE_YEAR, usegmt=True)


def _session_headers(
    request: web.Request, endpoint: Endpoint, content_type: str
) -> CIMultiDict[str]:
    """Headers of every response on a session URL: never cached, CORS, maybe a cookie."""
    headers: CIMultiDict[str] = CIMultiDict()
    headers["Content-Type"] = content_type
    headers["Cache-Control"] = NO_CACHE
    _cors(request, headers)
    if endpoint.options.cookie_needed:
        value = request.cookies.get("JSESSIONID", "")
        if not _COOKIE_VALUE.fullmatch(value):
            value = "dummy"
        headers["Set-Cookie"] = f"JSESSIONID={value}; Path=/"
    return headers


def _not_allowed(request: web.Request, allow: str) -> web.Response:
    headers: CIMultiDict[str] = CIMultiDict()
    headers["Allow"] = allow
    _cors(request, headers)
    return web.Response(status=405, headers=headers)


def _error(request: web.Request, status: int, message: str) -> web.Response:
    """An error answer, with the CORS headers of a success: a cross-origin page sees the
    status and the message, not a response the browser blocked (status 0)."""
    headers: CIMultiDict[str] = CIMultiDict()
    headers["Content-Type"] = "text/plain; charset=UTF-8"
    headers["Cache-Control"] = NO_CACHE
    _cors(request, headers)
    return web.Response(status=status, text=message, headers=headers)


def _preflight(request: web.Request, methods: str) -> web.Response:
    headers: CIMultiDict[str] = CIMultiDict()
    _cache_for_a_year(headers)
    headers["Access-Control-Max-Age"] = str(ONE_YEAR)
    headers["Access-Control-Allow-Methods"] = methods
    _cors(request, headers)
    return web.Response(status=204, headers=headers)


# --------------------------------------------------------------------------- static URLs


def _info(request: web.Request, endpoint: Endpoint) -> web.Response:
    if request.method == "OPTIONS":
        return _preflight(request, "OPTIONS, GET")
    if request.method not in ("GET", "HEAD"):
        return _not_allowed(request, "OPTIONS, GET")
    headers: CIMultiDict[str] = CIMultiDict()
    headers["Content-Type"] = "application/json; charset=UTF-8"
    headers["Cache-Control"] = NO_CACHE
    _cors(request, headers)
    info = {
        "websocket": endpoint.options.websocket,
        "cookie_needed": endpoint.options.cookie_needed,
        "origins": ["*:*"],
        "entropy": secrets.randbits(32),
    }
    return web.Response(body=orjson.dumps(info), headers=headers)


def _iframe(request: web.Request, endpoint: Endpoint) -> web.Response:
    page = (_IFRAME_PAGE % html.escape(endpoint.options.client_url)).encode()
    etag = '"' + hashlib.md5(page, usedforsecurity=False).hexdigest() + '"'
    headers: CIMultiDict[str] = CIMultiDict()
    _cache_for_a_year(headers)
    headers["ETag"] = etag
    if etag in request.headers.getall("If-None-Match", []):
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = "text/html; charset=UTF-8"
    return web.Response(body=page, headers=headers)


# --------------------------------------------------------------------------- receivers


class _PollingReceiver:
    """Collects one frame; the response is sent once the session is done with it."""

    def __init__(self, request: web.Request, envelope: Envelope, callback: str) -> None:
        self._request = request
        self._envelope = envelope
        self._callback = callback
        self.body = b""

    def alive(self) -> bool:
        transport = self._request.transport
        return transport is not None and not transport.is_closing()

    async def write(self, frame: Frame) -> bool:
        self.body += self._envelope.wrap(frame, self._callback)
        return False


class _StreamingReceiver(_PollingReceiver):
    """Writes frames as they come, until the response limit."""

    def __init__(
        self,
        request: web.Request,
        envelope: Envelope,
        callback: str,
        response: web.StreamResponse,
        limit: int,
    ) -> None:
        super().__init__(request, envelope, callback)
        self._response = response
        self._left = limit

    async def write(self, frame: Frame) -> bool:
        data = self._envelope.wrap(frame, self._callback)
        await self._response.write(data)
        self._left -= len(data)
        return self._left > 0


async def _receive(
    request: web.Request,
    endpoint: Endpoint,
    envelope: Envelope,
    session_id: str,
    remote: RemoteSessions | None,
) -> web.StreamResponse:
    callback = ""
    if envelope.needs_callback:
        callback = request.query.get("c") or request.query.get("callback") or ""
        if not callback:
            return _error(request, 500, '"callback" parameter required')
        if not CALLBACK.fullmatch(callback):
            return _error(request, 500, 'invalid "callback" parameter')
    headers = _session_headers(request, endpoint, envelope.content_type)
    peer = request.remote or "?"
    if remote is not None and session_id not in endpoint.sessions:
        # Held by another node (relayed there), or claimed here by this request.
        relayed = await remote.receive(request, envelope, session_id, callback, headers)
        if relayed is not None:
            return relayed
    if not envelope.streaming:
        receiver = _PollingReceiver(request, envelope, callback)
        live = endpoint.open(session_id, peer)
        live.request_headers = request.headers
        await live.serve(receiver)
        return web.Response(body=receiver.body, headers=headers)
    response = web.StreamResponse(headers=headers)
    if request.version < HttpVersion11:
        # No chunking in HTTP/1.0: the end of the stream is the end of the connection.
        response.force_close()
    try:
        await response.prepare(request)
        await response.write(envelope.prelude(callback))
    except ConnectionError:
        return response
    limit = endpoint.options.response_limit
    receiver = _StreamingReceiver(request, envelope, callback, response, limit)
    live = endpoint.open(session_id, peer)
    live.request_headers = request.headers
    await live.serve(receiver)
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response


# --------------------------------------------------------------------------- senders


async def _send(
    request: web.Request,
    endpoint: Endpoint,
    session_id: str,
    remote: RemoteSessions | None,
    *,
    jsonp: bool,
) -> web.Response:
    live = endpoint.get(session_id)
    if live is None and remote is None:
        return _error(request, 404, "No such session.\n")
    options = endpoint.options
    refusal = _too_large(request, endpoint)
    if refusal is not None:
        return refusal
    body = await request.read()
    try:
        if jsonp and request.content_type == "application/x-www-form-urlencoded":
            messages = decode_messages(_form_field(body, "d"))
        else:
            messages = decode_messages(body)
    except PayloadError as exc:
        return _error(request, 500, str(exc))
    if largest_message_size(messages) > options.max_message_size:
        options.counters["limit_message_size"] += 1
        log.info("sockjs send from %s: message over the size limit", request.remote)
        if live is not None:
            live.close(MESSAGE_TOO_BIG.code, MESSAGE_TOO_BIG.reason)
        elif remote is not None:
            await remote.send(session_id, messages)  # its node closes it
        return _error(request, 413, f"Message too big (at most {options.max_message_size} bytes).")
    if live is not None:
        await live.deliver(messages)
    elif remote is not None:
        # Held by another node: answered once that node has delivered them.
        result = await remote.send(session_id, messages)
        if result == "unavailable":
            return _error(request, 503, "Session directory unavailable.\n")
        if result == "unknown":
            return _error(request, 404, "No such session.\n")
        if result == "too_big":
            return _error(request, 413, "Message too big.")
    headers = _session_headers(request, endpoint, "text/plain; charset=UTF-8")
    if jsonp:
        # Some browsers mishandle a 204 here, so jsonp_send says "ok".
        return web.Response(text="ok", headers=headers)
    return web.Response(status=204, headers=headers)


def _too_large(request: web.Request, endpoint: Endpoint) -> web.Response | None:
    """413 for a request whose declared body is over the endpoint's limit, else None."""
    options = endpoint.options
    if (request.content_length or 0) <= options.max_body:
        return None
    options.counters["limit_http_body"] += 1
    log.info(
        "sockjs %s %s from %s: body over %d bytes",
        request.method,
        request.path[:200],
        request.remote,
        options.max_body,
    )
    return _error(request, 413, f"Payload too large (at most {options.max_body} bytes).")


def _unknown_expect(request: web.Request, message: str) -> web.Response:
    return _error(request, 417, message)


def _form_field(body: bytes, name: str) -> str:
    try:
        fields = parse_qsl(body.decode(), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise PayloadError(BROKEN_JSON) from None
    for key, value in fields:
        if key == name:
            return value
    raise PayloadError(PAYLOAD_EXPECTED)
