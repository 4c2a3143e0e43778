"""The SockJS URL scheme under a service's base URL, parsed without I/O.

``/`` (greeting), ``/info``, ``/iframe[-version].html``, ``/websocket`` (raw
WebSocket), and ``/<server>/<session>/<transport>``, where server and session
are non-empty and hold neither ``/`` nor ``.``. The server part is only for
load balancers; the session part, percent-decoded, names the session.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote


@dataclass(frozen=True, slots=True)
class Greeting:
    pass


@dataclass(frozen=True, slots=True)
class Info:
    pass


@dataclass(frozen=True, slots=True)
class Iframe:
    pass


@dataclass(frozen=True, slots=True)
class RawWebSocket:
    pass


@dataclass(frozen=True, slots=True)
class SessionUrl:
    session: str
    transport: str


Target = Greeting | Info | Iframe | RawWebSocket | SessionUrl

TRANSPORTS = frozenset(
    {
        "websocket",
        "xhr",
        "xhr_send",
        "xhr_streaming",
        "eventsource",
        "htmlfile",
        "jsonp",
        "jsonp_send",
    }
)

_SEGMENT = re.compile(r"[^/.]+")
_IFRAME = re.compile(r"iframe[0-9a-z._-]*\.html")


def parse(tail: str) -> Target | None:
    """What ``tail`` (the raw path after the base URL) asks for; None for nothing (404)."""
    if tail in ("", "/"):
        return Greeting()
    if not tail.startswith("/"):
        return None
    parts = tail[1:].split("/")
    if len(parts) == 1:
        name = parts[0]
        if name == "info":
            return Info()
        if name == "websocket":
            return RawWebSocket()
        if _IFRAME.fullmatch(name):
            return Iframe()
        return None
    if len(parts) == 3:
        server, session, transport = parts
        if _SEGMENT.fullmatch(server) and _SEGMENT.fullmatch(session) and transport in TRANSPORTS:
            return SessionUrl(unquote(session), transport)
    return None


def split_service(tail: str, services: frozenset[str] | set[str]) -> tuple[str, str]:
    """``("echo", "/info")`` for ``"/echo/info"`` if ``echo`` is a service, else ``("", tail)``."""
    if tail.startswith("/"):
        first, sep, rest = tail[1:].partition("/")
        if first in services:
            return first, sep + rest
    return "", tail
