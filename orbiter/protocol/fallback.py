"""A client's report of the transports it tried before this connection: its checks.

orbiter.js falls back from one transport to the next when a connection fails
before the server answers ``connect`` (a WebSocket that a proxy blocks, say).
The ``connect`` command that finally gets through then says what it tried::

    "fallback": {"to": "xhr-streaming",
                 "failed": [{"transport": "websocket", "reason": "closed 1006"}]}

The server logs it (DEBUG) and counts it by the first transport tried and the
one that worked (``orbiter_transport_fallbacks_total``). It is the client's own
word, a diagnostic only: :func:`parse_fallback` accepts transport names from
:data:`TRANSPORT_NAMES` alone (so a client cannot make a metric series or a
log field of its choosing), at most :data:`MAX_FAILED` failures, and reasons
of at most :data:`MAX_REASON` printable characters (no line break into a
text log). Anything else raises :class:`ValueError` naming the problem, and
the session ignores the report rather than the connection (see
``docs/protocol.md``).

The TCP proxy's client (orbiter.js's ``TCPSocket``) reports the same object:
in its ``connect`` message over SockJS, and as JSON in the ``fallback`` query
parameter of a ``/tcp`` WebSocket (:func:`parse_fallback_text`, at most
:data:`MAX_REPORT_TEXT` characters).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

#: orbiter.js's transports (its ``TRANSPORTS``): the only names a report may hold.
TRANSPORT_NAMES = frozenset(
    {"websocket", "xhr-streaming", "eventsource", "xhr-polling", "jsonp-polling"}
)
#: At most this many failed transports: every one but the one that worked.
MAX_FAILED = len(TRANSPORT_NAMES) - 1
#: The most characters of one failure's reason.
MAX_REASON = 120
#: The most characters of a report sent as JSON text (a query parameter).
MAX_REPORT_TEXT = 1024
#: The most characters of a bad value that an error message quotes.
_QUOTED = 40


@dataclass(frozen=True, slots=True)
class FailedTransport:
    """One transport that failed before the server answered ``connect``, and why."""

    transport: str
    reason: str


@dataclass(frozen=True, slots=True)
class TransportFallback:
    """What a client tried, in order (``failed``), before ``to`` carried this connection."""

    to: str
    failed: tuple[FailedTransport, ...]

    @property
    def first(self) -> str:
        """The transport the client tried first (its preferred one)."""
        return self.failed[0].transport

    @property
    def chain(self) -> str:
        """``websocket>xhr-streaming``: every transport tried, in order."""
        return ">".join([*(failure.transport for failure in self.failed), self.to])

    @property
    def reasons(self) -> str:
        """``websocket: closed 1006; ...``: why each failed."""
        return "; ".join(f"{failure.transport}: {failure.reason}" for failure in self.failed)


def _transport(value: object, field: str) -> str:
    if not isinstance(value, str) or value not in TRANSPORT_NAMES:
        shown = repr(value[:_QUOTED]) if isinstance(value, str) else type(value).__name__
        known = ", ".join(sorted(TRANSPORT_NAMES))
        raise ValueError(f"'fallback' {field} must be one of {known}, not {shown}")
    return value


def _failure(entry: object) -> FailedTransport:
    if not isinstance(entry, dict):
        raise ValueError("each of 'fallback.failed' must be an object {transport, reason?}")
    transport = _transport(entry.get("transport"), "failed transport")
    reason = entry.get("reason", "")
    if not isinstance(reason, str):
        raise ValueError("'fallback' reason must be a string")
    if len(reason) > MAX_REASON or not reason.isprintable():
        raise ValueError(
            f"'fallback' reason must be at most {MAX_REASON} printable characters "
            "(no control character or line break)"
        )
    return FailedTransport(transport, reason)


def parse_fallback(value: object) -> TransportFallback:
    """The report in ``connect``'s ``fallback`` field, checked; ValueError if malformed."""
    if not isinstance(value, dict):
        raise ValueError("'fallback' must be an object {to, failed}")
    to = _transport(value.get("to"), "'to'")
    failed = value.get("failed")
    if not isinstance(failed, list) or not 0 < len(failed) <= MAX_FAILED:
        raise ValueError(f"'fallback.failed' must be a list of 1 to {MAX_FAILED} failures")
    return TransportFallback(to, tuple(_failure(entry) for entry in failed))


def parse_fallback_text(text: str) -> TransportFallback:
    """A report sent as JSON text (``/tcp?fallback=``), checked; ValueError if malformed."""
    if len(text) > MAX_REPORT_TEXT:
        raise ValueError(f"'fallback' must be at most {MAX_REPORT_TEXT} characters of JSON")
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ValueError("'fallback' must be JSON: {to, failed}") from None
    return parse_fallback(value)
