"""Orbited 0.3 connection URLs: ``/<location>|<user>,<session>,<transport>``.

A page written for Orbited 0.3 opens, say, ``/chat|alice,0,xhr``: the
connection key ``"alice, 0, /chat"`` and the transport that carries what
``event(keys, ...)`` sends to it. This module turns such a path (already
percent-decoded) into the key and the transport. Pure code, no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from orbiter.protocol.keys import ConnectionKey, InvalidKey


class LegacyTransport(enum.Enum):
    #: An HTML document of ``<script>`` tags, streamed into an iframe.
    IFRAME = "iframe"
    #: Orbited 0.3's iframe for a page on another subdomain, which set ``document.domain``
    #: on both sides. Browsers no longer let a page set it, so this is served as ``iframe``:
    #: it works where the page and orbiter share an origin (the dev proxy), as ``iframe``.
    IFRAME_DOMAIN = "iframe_domain"
    #: Long polling: one event per response, as a JavaScript value for ``eval``.
    XHR = "xhr"
    #: Server-Sent Events for ``EventSource``.
    SSE = "sse"

    @property
    def streams_html(self) -> bool:
        """Is this an iframe's HTML document of script tags?"""
        return self in (LegacyTransport.IFRAME, LegacyTransport.IFRAME_DOMAIN)


class BadLegacyUrl(ValueError):
    """A path that is not a well-formed Orbited URL; the message says why."""


@dataclass(frozen=True, slots=True)
class LegacyUrl:
    key: ConnectionKey
    transport: LegacyTransport


def parse_legacy_path(path: str) -> LegacyUrl:
    """Parse ``/<location>|<user>,<session>,<transport>`` (percent-decoded)."""
    location, bar, rest = path.rpartition("|")
    if not bar:
        raise BadLegacyUrl("an Orbited URL is /<location>|<user>,<session>,<transport>")
    parts = rest.split(",")
    if len(parts) != 3:
        raise BadLegacyUrl(
            f"{rest[:80]!r} must be '<user>,<session>,<transport>' (three comma-separated parts)"
        )
    user, session, name = parts
    try:
        transport = LegacyTransport(name.strip())
    except ValueError:
        known = ", ".join(t.value for t in LegacyTransport)
        raise BadLegacyUrl(f"unknown Orbited transport {name[:40]!r} (known: {known})") from None
    try:
        key = ConnectionKey.build(user, session, location)
    except InvalidKey as exc:
        raise BadLegacyUrl(str(exc)) from None
    return LegacyUrl(key, transport)
