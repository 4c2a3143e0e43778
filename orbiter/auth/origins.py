"""Which page origins may open push connections: the decision, without I/O.

Allowed: requests that carry no origin at all (non-browser clients; a
browser always sends ``Origin`` on WebSocket and cross-origin requests),
the server's own origin (the ``Origin`` host and port equal the ``Host``
header), the ``origins.allow`` list (``"*"``: all), and ``localhost``,
``127.0.0.1`` and ``[::1]`` on any port when ``origins.localhost`` is on
(by default: while auth is off, for development). ``null`` (sandboxed
frames, ``file:``) is refused unless ``"*"`` is listed.

Which ``Host`` names requests may carry is decided here too
(:class:`HostAllowList`, ``server.allowed_hosts``): a server running open
answers only its bound address and localhost names by default, so a page
elsewhere cannot reach it through a DNS name it rebinds to 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from urllib.parse import urlsplit

from orbiter.config.settings import Config, OriginSettings

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


#: A ``Host`` header: a bracketed IPv6 address or a name, then an optional ``:port``.
_HOST_HEADER = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(?::[0-9]*)?", re.ASCII)
#: Bound addresses that mean every interface: any IP literal reaches the server.
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]"})
#: What an open server answers by default, besides its bound address.
_LOCAL_NAMES = ("localhost", "127.0.0.1", "[::1]")


def host_name(host: str) -> str | None:
    """The name in a ``Host`` header value, lower case, without port or final dot.

    IP literals are written canonically (``[::1]``, ``127.0.0.1``); None if
    the value is not a host (empty, a bad port, an unclosed bracket...).
    """
    match = _HOST_HEADER.fullmatch(host.strip().lower())
    if match is None:
        return None
    name = match.group(1)
    if name.startswith("["):
        try:
            return f"[{ipaddress.IPv6Address(name[1:-1])}]"
        except ValueError:
            return None
    name = name.removesuffix(".")
    return name or None


def _is_ip_literal(name: str) -> bool:
    if name.startswith("["):
        return True  # host_name only returns valid bracketed IPv6 addresses
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


#: At most this many ``Host`` values' verdicts are remembered.
_VERDICTS = 256


class HostAllowList:
    """Which ``Host`` header names a server answers (``server.allowed_hosts``).

    Entries are names or IP literals (exact), ``.example.com`` (the domain and
    its subdomains) or ``*`` (any). An empty list means: while the server
    runs open (no API key, no auth), its bound address (any IP literal when
    bound to every interface), ``localhost``, ``*.localhost``, ``127.0.0.1``
    and ``[::1]``; any host otherwise. A request without ``Host`` (HTTP/1.0,
    never a browser) names nothing to refuse and is let through.
    """

    __slots__ = ("_verdicts", "any_host", "any_ip", "default", "domains", "names")

    def __init__(self, allowed: tuple[str, ...], *, bound: str, running_open: bool) -> None:
        #: True when the list is the open server's default (for the refusal message).
        self.default = not allowed
        if not allowed:
            allowed = (bound, *_LOCAL_NAMES, ".localhost") if running_open else ("*",)
        self.any_host = "*" in allowed
        self.any_ip = self.default and bound.strip().lower() in _WILDCARDS
        names: set[str] = set()
        domains: list[str] = []
        for entry in allowed:
            if entry.startswith("."):
                domains.append(entry.lower().removesuffix("."))
                continue
            if ":" in entry and not entry.startswith("["):
                entry = f"[{entry}]"  # a bound IPv6 address
            name = host_name(entry)
            if name is not None:
                names.add(name)
        self.names = frozenset(names)
        self.domains = tuple(domains)
        #: Verdicts on the ``Host`` values seen lately (a connection sends the same one
        #: with every request); forgotten all at once when it holds :data:`_VERDICTS`.
        self._verdicts: dict[str, bool] = {}

    def allows(self, host: str | None) -> bool:
        """May a request with this ``Host`` header value (None: none sent) be answered?"""
        if self.any_host or host is None:
            return True
        verdict = self._verdicts.get(host)
        if verdict is None:
            if len(self._verdicts) >= _VERDICTS:
                self._verdicts.clear()
            verdict = self._verdicts[host] = self._judge(host)
        return verdict

    def _judge(self, host: str) -> bool:
        name = host_name(host)
        if name is None:
            return False
        if name in self.names or (self.any_ip and _is_ip_literal(name)):
            return True
        return any(name == domain[1:] or name.endswith(domain) for domain in self.domains)


@lru_cache(maxsize=16)
def _allow_list(allowed: tuple[str, ...], bound: str, running_open: bool) -> HostAllowList:
    return HostAllowList(allowed, bound=bound, running_open=running_open)


def host_allow_list(config: Config) -> HostAllowList:
    """The :class:`HostAllowList` of ``config`` (built once per config)."""
    running_open = config.api_key is None and not config.auth_required
    return _allow_list(config.allowed_hosts, config.host, running_open)
