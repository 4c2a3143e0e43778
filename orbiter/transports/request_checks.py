"""What every route checks before its handler runs: host, origin, peer, credentials.

The rule functions, one place for each rule; the aiohttp middleware that
applies the origin rule and CORS to every push route is
:mod:`orbiter.http.origin_guard`, and the front middleware
(:mod:`orbiter.http.front`) applies the host and peer rules. The checks read a
:class:`RequestHead`: aiohttp's ``web.Request`` is one, and so is the
handshake head the native WebSocket reads itself, before aiohttp
(:mod:`orbiter.protocol.websocket_handshake`), so both paths apply the same
rules from this one place.

:func:`host_refusal` is the one ``Host`` check (``server.allowed_hosts``,
decided by :class:`orbiter.auth.origins.HostAllowList`): :func:`head_refusal`
(which the front middleware asks on every route) answers a refused ``Host``
``400`` naming it, logged and counted; the sniffed fast paths check it through
:func:`host_allowed` (publish) and :func:`origin_verdict` (WebSocket
handshakes), and leave refused requests to aiohttp, which answers them so.

:func:`origin_refusal` is the one origin check: WebSocket, SockJS (all its
transports), SSE, long polls and the Orbited URLs go through it (the
middleware on every push route, :func:`is_guarded`). A refused origin gets
``403`` with a JSON error naming it, a log line and a counter. Allowed
cross-origin requests get CORS headers naming the origin, with credentials
(:func:`cors_headers`); refused ones get none. A request that would open a
channel past ``limits.max_channels`` (:class:`TooManyStreams`, counted by
PubSub) gets the ``503`` with ``Retry-After`` of :func:`channels_full_answer`,
from the middleware and from the publish fast path.

:func:`request_credentials` collects what a request presents for
:meth:`orbiter.auth.Authenticator.authenticate_connection`: a token from
``?token=`` or ``Authorization: Bearer``, and the headers app hooks receive.
:func:`authorize_read` applies a session's subscribe rules to routes that
have no session (long polls): 401/403 naming the problem, counted.

:func:`peer_address` takes the client's address from ``X-Forwarded-For``
when, and only when, the request comes from one of ``server.trusted_proxies``,
so per-IP limits and logs see the client (the front middleware applies it to
every aiohttp route, the publish fast path through :func:`forwarded_peer`).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol

from aiohttp import web
from multidict import MultiMapping

from orbiter.auth import AuthError, Credentials, Failure
from orbiter.auth.hooks import forwarded
from orbiter.auth.origins import normalise_origin, origin_allowed
from orbiter.engine.base import TooManyStreams
from orbiter.node import Node
from orbiter.protocol.keys import ConnectionKey
from orbiter.protocol.websocket_handshake import undecodable
from orbiter.transports.app_keys import NODE
from orbiter.transports.errors import error_response
from orbiter.transports.sockjs_suite import is_test_service_path

log = logging.getLogger("orbiter.origin")

#: Path prefixes that are not push routes (no origin check, no CORS).
_UNGUARDED = ("/api/", "/static/")


class ErrorAnswer(NamedTuple):
    """A refusal as HTTP says it: the status, the JSON error's message, extra headers.

    What a rule decides, for aiohttp's middleware and the publish fast path to write.
    """

    status: int
    message: str
    headers: Mapping[str, str] = {}


#: Seconds a request refused for ``limits.max_channels`` is told to wait (``Retry-After``).
CHANNELS_RETRY_AFTER = 5


class RequestHead(Protocol):
    """What the checks here read of a request (``web.Request`` is one)."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def scheme(self) -> str: ...
    @property
    def remote(self) -> str | None: ...
    @property
    def headers(self) -> MultiMapping[str]: ...
    @property
    def query(self) -> Mapping[str, str]: ...


def page_origin(request: RequestHead) -> str | None:
    """The origin of the page that made ``request``, if the browser says.

    ``Origin`` when sent; else the origin of ``Referer`` for a request the
    browser marks as not same-origin (``Sec-Fetch-Site``), e.g. a JSONP
    script tag; else None (a same-origin request or a non-browser client).
    """
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin
    site = request.headers.get("Sec-Fetch-Site")
    if site in ("cross-site", "same-site"):
        referer = request.headers.get("Referer", "")
        parsed = normalise_origin(referer)
        return "null" if parsed is None else f"{parsed[0]}://{parsed[1]}:{parsed[2]}"
    return None


def host_allowed(host: str | None, node: Node) -> bool:
    """May a request with this ``Host`` header value (None: none sent) be answered?"""
    return node.hosts.allows(host)


def host_refusal(request: RequestHead, node: Node) -> str | None:
    """None if the request's ``Host`` may be answered, else why not (counted, logged)."""
    host = request.headers.get("Host")
    allow_list = node.hosts
    if allow_list.allows(host):
        return None
    shown = repr((host or "")[:200])
    node.counters["host_refused"] += 1
    log.warning(
        "%s %s from %s: Host %s refused", request.method, request.path[:200], request.remote, shown
    )
    if allow_list.default:
        return (
            f"Host {shown} is not in server.allowed_hosts (running open, with no API key and "
            "no auth, orbiter answers only its own address and localhost names)"
        )
    return f"Host {shown} is not in server.allowed_hosts"


def head_refusal(request: web.Request, node: Node) -> str | None:
    """Why a request may not be answered from its head alone, or None.

    Its ``Host`` is not allowed (``server.allowed_hosts``), or it is a
    WebSocket handshake with a header that is not ASCII (aiohttp's own
    handshake check would fail on it with a 500). Answered ``400`` on every
    route, by the front middleware (``http/front.py``).
    """
    refusal = host_refusal(request, node)
    if refusal is None and "Upgrade" in request.headers:
        refusal = undecodable(request.headers)
    return refusal


def origin_verdict(request: RequestHead, node: Node) -> tuple[str | None, bool]:
    """The request's page origin, and whether it may use this server.

    A request whose ``Host`` is not allowed may not, whatever its origin: so
    ``Origin`` equal to such a ``Host`` is never "same origin" (DNS rebinding).
    """
    origin = page_origin(request)
    if not host_allowed(request.headers.get("Host"), node):
        return origin, False
    allowed = origin_allowed(
        origin,
        host=request.headers.get("Host"),
        scheme=request.scheme,
        settings=node.config.origins,
        running_open=not node.config.auth_required,
    )
    return origin, allowed


def origin_refusal(request: RequestHead, node: Node) -> str | None:
    """None if the request's page origin may use this server, else why not (counted, logged).

    A refused ``Host`` is named as such (:func:`host_refusal`).
    """
    host = host_refusal(request, node)
    if host is not None:
        return host
    origin, allowed = origin_verdict(request, node)
    if allowed:
        return None
    node.counters["origin_refused"] += 1
    log.warning(
        "%s %s from %s: origin %r refused",
        request.method,
        request.path[:200],
        request.remote,
        origin,
    )
    return f"origin {origin!r} may not connect to this server (see [origins] allow)"


def is_guarded(path: str, node: Node) -> bool:
    """Is ``path`` a push route (origin checked, CORS answered)?"""
    if path == "/" or path.startswith(_UNGUARDED):
        return False
    return not is_test_service_path(node.config, path)


def channels_full_answer(
    exc: TooManyStreams, method: str, path: str, peer: str | None
) -> ErrorAnswer:
    """The answer to a request that would open a channel past ``limits.max_channels``.

    Logged here; counted by PubSub, which raised it.
    """
    log.warning("%s %s from %s: %s", method, path[:200], peer, exc)
    return ErrorAnswer(503, str(exc), {"Retry-After": str(CHANNELS_RETRY_AFTER)})


def cors_headers(request: RequestHead, node: Node) -> dict[str, str]:
    """The CORS headers for a push request: naming its origin if allowed, else none."""
    origin = request.headers.get("Origin")
    if origin is None or not is_guarded(request.path, node) or not origin_verdict(request, node)[1]:
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }


def client_address(forwarded_for: Sequence[str], proxies: tuple[str, ...]) -> str | None:
    """The client in ``X-Forwarded-For``: the last hop that is not a trusted proxy."""
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        try:
            address = str(ipaddress.ip_address(hop))
        except ValueError:
            return None
        if address not in proxies:
            return address
    return None


def peer_address(remote: str | None, headers: MultiMapping[str], node: Node) -> str | None:
    """The client's address: ``remote``, or behind a trusted proxy the forwarded client."""
    return forwarded_peer(remote, headers.getall("X-Forwarded-For", ()), node)


def forwarded_peer(remote: str | None, forwarded_for: Sequence[str], node: Node) -> str | None:
    """:func:`peer_address`, given every ``X-Forwarded-For`` value of the request, in order."""
    proxies = node.config.trusted_proxies
    if proxies and remote in proxies:
        client = client_address(forwarded_for, proxies)
        if client is not None:
            return client
    return remote


def request_credentials(request: RequestHead, transport: str) -> Credentials:
    """What ``request`` presents: its token (``?token=`` or a Bearer header) and headers.

    Only the headers app hooks receive are kept (:data:`~orbiter.auth.hooks.FORWARDED_HEADERS`):
    a session holds its credentials for its whole life.
    """
    token = request.query.get("token")
    if token is None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            token = value.strip()
    return Credentials(
        peer=request.remote or "?",
        token=token,
        headers=forwarded(request.headers),
        transport=transport,
    )


async def authorize_read(
    request: web.Request, *, channel: str | None = None, key: ConnectionKey | None = None
) -> web.Response | None:
    """For routes without a session (long polls): may this request read ``channel`` or ``key``?

    None if so; else the 401 or 403 to answer. The same rules as a session's
    subscribe: the request's credentials are authenticated, a key must be
    granted, a channel must pass its rule (a private channel's subscription
    token goes in ``?channel_token=``).
    """
    node = request.app[NODE]
    credentials = request_credentials(request, "poll")
    try:
        identity = await node.auth.authenticate_connection(credentials)
        if key is not None and not identity.may_be_key(key):
            raise AuthError(Failure.FORBIDDEN, f"the credentials do not grant key {str(key)!r}")
        if channel is not None:
            await node.auth.permissions.check_subscribe(
                identity,
                channel,
                client="",
                token=request.query.get("channel_token"),
                headers=request.headers,
            )
    except AuthError as exc:
        node.counters[f"auth_{exc.failure.value}"] += 1
        log.info("GET %s from %s: %s", request.path[:200], request.remote, exc.message)
        status = 403 if exc.failure is Failure.FORBIDDEN else 401
        return error_response(status, exc.message)
    return None
