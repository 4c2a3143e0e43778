"""Settings of live elements (``[live]``, its ``[[live.element]]`` mounts) and the RPC proxy.

``orbiter.config.settings`` reads the tables through :func:`live_settings_from`
and :func:`rpc_settings_from`,
which checks every key and raises :class:`SettingsError` naming it;
``docs/config.md`` lists them. A mount names its element factory as
``package.module:attribute``; it is imported when the node starts
(``orbiter/services/live/host.py``), not here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from orbiter.config.values import SettingsError, scalars

#: ``package.module:attribute`` (the attribute may be dotted: ``module:Room.make``).
_FACTORY = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
#: A mount path: ``/`` or segments of URL-safe characters, no trailing slash.
_PATH = re.compile(r"/|(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+")
#: Paths orbiter's own routes start with: no mount may take them.
RESERVED_PATHS = ("/api", "/static", "/connection", "/poll", "/sockjs", "/stomp", "/tcp")


@dataclass(frozen=True, slots=True)
class ElementMount:
    """A page at ``path`` making one element per browser connection with ``factory``."""

    path: str
    factory: str
    #: The page's ``<title>``.
    title: str = "orbiter"


@dataclass(frozen=True, slots=True)
class LiveSettings:
    #: Seconds a call may take, either way: a browser's call still running is
    #: cancelled (error 114), a call to the browser unanswered fails with RemoteTimeout.
    call_timeout: float = 30.0
    #: Calls one connection may have outstanding, each way: its own calls running
    #: (past it: error 106) and the server's calls to it unanswered (TooManyCalls).
    max_calls: int = 16
    #: Calls per second one connection may make (token bucket), and its burst.
    call_rate: float = 20.0
    call_burst: int = 40
    #: Elements one connection may attach.
    max_elements: int = 8
    #: Seconds an element outlives its connection, for the page to reconnect and
    #: resume it (the same element, its state kept); then ``detached`` runs. 0: at once.
    grace_period: float = 10.0
    #: Elements kept for a reconnect at once on the node; past it they are detached at once.
    max_parked: int = 10_000
    #: Send an exposed method's traceback to the browser with its error (development only).
    debug: bool = False
    mounts: tuple[ElementMount, ...] = ()


@dataclass(frozen=True, slots=True)
class RpcSettings:
    """The RPC proxy: a browser's ``rpc`` is POSTed to the app server at ``url``."""

    #: ``http(s)://...``; "" = no proxy (``rpc`` is refused with 112).
    url: str = ""
    #: Seconds the app server has to answer (then error 114).
    timeout: float = 10.0


def rpc_settings_from(table: dict[str, Any]) -> RpcSettings:
    """Build settings from a parsed ``[rpc]`` table."""
    settings = replace(RpcSettings(), **scalars(table, "rpc", {"url": str, "timeout": float}))
    if settings.url and not settings.url.startswith(("http://", "https://")):
        raise SettingsError("'rpc.url' must be an http:// or https:// URL")
    if settings.timeout <= 0:
        raise SettingsError("'rpc.timeout' must be positive")
    return settings


_SCALARS: dict[str, type] = {
    "call_timeout": float,
    "max_calls": int,
    "call_rate": float,
    "call_burst": int,
    "max_elements": int,
    "grace_period": float,
    "max_parked": int,
    "debug": bool,
}


def live_settings_from(table: dict[str, Any]) -> LiveSettings:
    """Build settings from a parsed ``[live]`` table."""
    table = dict(table)
    raw_mounts = table.pop("element", [])
    settings = replace(LiveSettings(), **scalars(table, "live", _SCALARS))
    for name in ("call_timeout", "max_calls", "call_rate", "call_burst", "max_elements"):
        if getattr(settings, name) <= 0:
            raise SettingsError(f"'live.{name}' must be positive")
    if settings.grace_period < 0 or settings.max_parked < 0:
        raise SettingsError("'live.grace_period' and 'live.max_parked' must not be negative")
    if not isinstance(raw_mounts, list):
        raise SettingsError("'live.element' must be an array of tables ([[live.element]])")
    mounts = tuple(_mount(t, f"live.element[{i}]") for i, t in enumerate(raw_mounts))
    return with_mounts(settings, mounts)


def with_mounts(settings: LiveSettings, mounts: tuple[ElementMount, ...]) -> LiveSettings:
    """``settings`` with ``mounts`` added; SettingsError for a path mounted twice."""
    seen = {m.path for m in settings.mounts}
    for mount in mounts:
        if mount.path in seen:
            raise SettingsError(f"live element path {mount.path!r} is mounted twice")
        seen.add(mount.path)
    return replace(settings, mounts=settings.mounts + mounts)


def element_mount(path: str, factory: str, title: str = "orbiter", where: str = "") -> ElementMount:
    """A checked mount; SettingsError names the bad value: ``where`` is its table
    (``live.element[0]``), or none for ``orbiter serve --element``."""
    path_key = f"'{where}.path'" if where else "the --element path"
    factory_key = f"'{where}.factory'" if where else "--element"
    if not _PATH.fullmatch(path):
        raise SettingsError(f"{path_key} must be '/' or a URL path without a trailing '/'")
    if any(path == p or path.startswith(p + "/") for p in RESERVED_PATHS):
        raise SettingsError(f"{path_key} {path!r} is orbiter's own route")
    if not _FACTORY.fullmatch(factory):
        raise SettingsError(
            f"{factory_key} must be 'package.module:attribute', not {factory[:80]!r}"
        )
    return ElementMount(path, factory, title)


def _mount(table: object, where: str) -> ElementMount:
    if not isinstance(table, dict):
        raise SettingsError(f"'{where}' must be a table")
    values = scalars(table, where, {"path": str, "factory": str, "title": str})
    for key in ("path", "factory"):
        if key not in values:
            raise SettingsError(f"'{where}' needs '{key}'")
    return element_mount(values["path"], values["factory"], values.get("title", "orbiter"), where)
