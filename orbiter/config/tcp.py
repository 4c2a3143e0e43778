"""Settings of the TCP-facing parts: the browser TCP proxy, the pyorbited listener, the dev proxy.

``orbiter.config.settings`` reads the ``[tcp]``, ``[pyorbited]`` and ``[dev_proxy]``
tables through :func:`tcp_settings_from`, :func:`pyorbited_settings_from`
and :func:`dev_proxy_settings_from`. Each checks every key and raises
:class:`SettingsError` naming the key; ``docs/config.md`` lists them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from orbiter.config.values import SettingsError, check_positive, kinds_of, scalars
from orbiter.protocol.tcp_access import AccessRule, BadTarget

#: A ``[dev_proxy]`` route target meaning "orbiter itself" (the seed's ``ORBITED``).
ORBITED = "ORBITED"


@dataclass(frozen=True, slots=True)
class TcpSettings:
    """The browser TCP proxy (``/tcp``): who may reach what, and the limits."""

    #: First matching rule allows; none matching denies (deny by default).
    access: tuple[AccessRule, ...] = ()
    #: Seconds to wait for a backend to accept the connection (then close 4504).
    connect_timeout: float = 10.0
    #: Seconds without a byte either way after which a connection is closed (4408).
    idle_timeout: float = 300.0
    #: Proxied connections open at once on this node, and from one IP address (4429).
    max_connections: int = 1000
    max_per_ip: int = 16
    #: ... from one page (the ``session`` id orbiter.js sends; within the per-IP limit).
    max_per_session: int = 8
    #: Bytes read from a backend at once: the most one frame to the browser carries.
    read_size: int = 65_536


@dataclass(frozen=True, slots=True)
class PyorbitedSettings:
    """The listener for pyorbited's ``Orbit 1.0`` event protocol (the seed's ``orbit://``).

    The protocol has no authentication: whoever reaches the port publishes
    to any channel. So ``host`` must be a loopback address unless
    ``allow_remote`` says otherwise.
    """

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 9000
    #: Bind ``host`` even when it is not a loopback address (warned about at start-up).
    allow_remote: bool = False
    #: Largest event body accepted (the ``length:`` header), in bytes.
    max_body: int = 1_048_576
    #: Largest request (every line with its CRLF, and the body): a max_body event
    #: and 64 KiB of headers.
    max_request: int = 1_114_112
    #: Connections open at once; past it a new one is answered Failure and closed.
    max_connections: int = 64
    #: Seconds without a byte from the app server (or without its reading our
    #: answers) after which its connection is closed.
    idle_timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class DevRoute:
    """Requests whose path starts with ``prefix`` go to ``to`` (a URL, or :data:`ORBITED`)."""

    prefix: str
    to: str


@dataclass(frozen=True, slots=True)
class DevProxySettings:
    """The development reverse proxy (the seed's ``[proxy]``): one origin for page and push."""

    enabled: bool = False
    #: Keep connections to the app server open between requests (the seed's proxy.keepalive).
    keepalive: bool = True
    routes: tuple[DevRoute, ...] = ()


def tcp_settings_from(table: dict[str, Any]) -> TcpSettings:
    table = dict(table)
    rules_raw = table.pop("access", [])
    values = scalars(
        table,
        "tcp",
        {
            "connect_timeout": float,
            "idle_timeout": float,
            "max_connections": int,
            "max_per_ip": int,
            "max_per_session": int,
            "read_size": int,
        },
    )
    check_positive(TcpSettings(**values), "tcp", values)
    if not isinstance(rules_raw, list):
        raise SettingsError("'tcp.access' must be an array of tables ([[tcp.access]])")
    rules = []
    for i, rule in enumerate(rules_raw):
        where = f"tcp.access[{i}]"
        if not isinstance(rule, dict):
            raise SettingsError(f"'{where}' must be a table")
        fields = scalars(rule, where, {"to": str, "via": str, "origin": str})
        if "to" not in fields:
            raise SettingsError(f"'{where}.to' is required: the destination 'host:port'")
        try:
            rules.append(AccessRule.build(**fields))
        except BadTarget as exc:
            raise SettingsError(f"'{where}': {exc}") from None
    return TcpSettings(access=tuple(rules), **values)


def pyorbited_settings_from(table: dict[str, Any]) -> PyorbitedSettings:
    values = scalars(table, "pyorbited", kinds_of(PyorbitedSettings))
    settings = PyorbitedSettings(**values)
    if not 0 <= settings.port <= 65535:
        raise SettingsError("'pyorbited.port' must be between 0 and 65535")
    check_positive(
        settings, "pyorbited", ("max_body", "max_request", "max_connections", "idle_timeout")
    )
    if settings.max_body > settings.max_request:
        raise SettingsError(
            f"'pyorbited.max_body' ({settings.max_body}) is more than 'pyorbited.max_request' "
            f"({settings.max_request}), which bounds the whole request: raise both"
        )
    if settings.enabled and not settings.allow_remote and not is_loopback(settings.host):
        raise SettingsError(
            f"'pyorbited.host' is {settings.host!r}, not a loopback address: the Orbit protocol "
            "has no authentication, so anyone who can reach the port could publish to every "
            "channel. Bind it to 127.0.0.1, or set 'pyorbited.allow_remote = true' (TOML) to "
            "accept that"
        )
    return settings


def is_loopback(host: str) -> bool:
    """Is ``host`` a loopback address (127.0.0.0/8, ::1) or ``localhost``? No DNS is asked."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def dev_proxy_settings_from(table: dict[str, Any]) -> DevProxySettings:
    table = dict(table)
    routes_raw = table.pop("route", [])
    values = scalars(table, "dev_proxy", {"enabled": bool, "keepalive": bool})
    if not isinstance(routes_raw, list):
        raise SettingsError("'dev_proxy.route' must be an array of tables ([[dev_proxy.route]])")
    routes = []
    for i, route in enumerate(routes_raw):
        where = f"dev_proxy.route[{i}]"
        if not isinstance(route, dict):
            raise SettingsError(f"'{where}' must be a table")
        fields = scalars(route, where, {"prefix": str, "to": str})
        if set(fields) != {"prefix", "to"}:
            raise SettingsError(f"'{where}' needs both 'prefix' and 'to'")
        routes.append(dev_route(fields["prefix"], fields["to"], where))
    return DevProxySettings(routes=tuple(routes), **values)


def dev_route(prefix: str, to: str, where: str) -> DevRoute:
    """A checked route: an absolute path prefix, and ORBITED or an http:// URL with a host."""
    prefix, to = prefix.strip(), to.strip()
    if not prefix.startswith("/") or any(c.isspace() or c in "?#" for c in prefix):
        raise SettingsError(f"'{where}': prefix {prefix!r} must be a path starting with '/'")
    if to != ORBITED:
        parts = urlsplit(to)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            raise SettingsError(
                f"'{where}': target {to!r} must be {ORBITED} or an http(s)://host[:port] URL"
            )
    return DevRoute(prefix.rstrip("/") or "/", to.rstrip("/"))
