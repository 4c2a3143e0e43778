"""A client's transport fallback report, counted and logged: the one place for both.

A native session (``connect``'s ``fallback``) and the TCP proxy (a TCPSocket's
report) hand in how to read the report (``protocol/fallback.py`` checks it); a
counted report goes to ``orbiter_transport_fallbacks_total`` and, at DEBUG, one
``fallback`` line. A malformed report is a diagnostic gone wrong, never a reason
to drop the connection: it is ignored with one ``fallback_ignored`` DEBUG line.
"""

from __future__ import annotations

from collections.abc import Callable

from orbiter.logs import Counters, EventLog
from orbiter.protocol.fallback import TransportFallback


def record_fallback(
    counters: Counters,
    events: EventLog,
    client: str,
    peer: str,
    parse: Callable[[], TransportFallback],
) -> None:
    """Count and log (DEBUG) the transports ``client`` says failed before the one it
    is on; ``parse`` reads the report (raising ValueError for a malformed one)."""
    try:
        fallback = parse()
    except ValueError as exc:
        if events.debug:
            events.fallback_ignored(client, peer, str(exc))
        return
    counters.fallbacks[fallback.first, fallback.to] += 1
    if events.debug:
        events.fell_back(client, peer, fallback.to, fallback.chain, fallback.reasons)
