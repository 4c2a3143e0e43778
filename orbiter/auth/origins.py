"""Which page origins may open push connections: the decision, without I/O.

Allowed: requests that carry no origin at all (non-browser clients; a
browser always sends ``Origin`` on WebSocket and cross-origin requests),
the server's own origin (the ``Origin`` host and port equal the ``Host``
header), the ``origins.allow`` list (``"*"``: all), and ``localhost``,
``127.0.0.1`` and ``[::1]`` on any port when ``origins.localhost`` is on
(by default: while auth is off, for development). ``null`` (sandboxed
frames, ``file:``) is refused unless ``"*"`` is listed.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from orbiter.config import OriginSettings

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


def normalise_origin(origin: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an origin (or a URL's origin); None if it is not one."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def _host_header(host: str, scheme: str) -> tuple[str, int] | None:
    parsed = normalise_origin(f"{scheme}://{host}")
    return None if parsed is None else (parsed[1], parsed[2])


def origin_allowed(
    origin: str | None,
    *,
    host: str | None,
    scheme: str,
    settings: OriginSettings,
    running_open: bool,
) -> bool:
    """May a page of ``origin`` use this server, reached at ``host`` over ``scheme``?"""
    if origin is None:
        return True
    if "*" in settings.allow:
        return True
    parsed = normalise_origin(origin)
    if parsed is None:
        return False
    o_scheme, o_host, o_port = parsed
    if host is not None:
        # Behind a TLS-terminating proxy the page is https while orbiter sees http:
        # the host and port the browser used decide.
        own = _host_header(host, o_scheme)
        if own is not None and own == (o_host, o_port):
            return True
    for allowed in settings.allow:
        if normalise_origin(allowed) == parsed:
            return True
    localhost = settings.localhost if settings.localhost is not None else running_open
    return localhost and o_host in _LOCAL_HOSTS
