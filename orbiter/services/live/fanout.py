"""Calls from the app server to many browser widgets at once (``POST /api/call``).

The caller picks the connections (a user's, an Orbited key's, a channel's
subscribers) and, optionally, a mount; :func:`call_widgets` calls ``method``
on every attached widget of theirs through :meth:`LiveConnection.call_remote`,
so each call has the connection's limits and time-out. Fire-and-forget
answers how many calls were sent; ``wait`` gathers every outcome (a value, or
an error with its type) within the time-out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from orbiter.protocol.live import TooManyCalls
from orbiter.services.live.connection import LiveConnection
from orbiter.services.live.elements import ConnectionLost, RemoteError, RemoteTimeout


async def call_widgets(
    connections: Iterable[LiveConnection],
    method: str,
    args: tuple[Any, ...],
    *,
    mount: str | None,
    timeout: float,
    wait: bool,
) -> dict[str, Any]:
    """``{"calls": n}``, or with ``wait`` ``{"results": [...]}`` in the order called."""
    started: list[tuple[dict[str, Any], asyncio.Future[Any]]] = []
    for connection in connections:
        for element, where in connection.widgets():
            if mount is not None and where != mount:
                continue
            who = {"client": connection.client_id, "element": element, "mount": where}
            started.append((who, connection.call_remote(element, method, args, timeout)))
    if not wait:
        sent = sum(1 for _, f in started if not (f.done() and f.exception() is not None))
        return {"calls": sent}
    if started:
        await asyncio.wait([f for _, f in started])
    return {"results": [_outcome(who, future) for who, future in started]}


def _outcome(who: dict[str, Any], future: asyncio.Future[Any]) -> dict[str, Any]:
    exc = future.exception()
    if exc is None:
        return {**who, "value": future.result()}
    if isinstance(exc, RemoteError):
        error = {"type": exc.type, "message": exc.message}
    elif isinstance(exc, RemoteTimeout | ConnectionLost | TooManyCalls):
        error = {"type": type(exc).__name__, "message": str(exc)}
    else:  # pragma: no cover - call_remote fails with the errors above only
        error = {"type": "Error", "message": str(exc)}
    return {**who, "error": error}
