"""The Server-Sent Events wire format, and event ids that hold stream positions.

An SSE stream is UTF-8 text: each event is a block of ``field: value`` lines
ended by a blank line; a line starting with ``:`` is a comment (orbiter's
heartbeat). A browser's ``EventSource`` remembers the ``id`` of the last
event it dispatched and, when it reconnects by itself, sends it back in the
``Last-Event-ID`` header.

orbiter's ids hold one position per channel, in the order the channels are
named in the URL (which the browser repeats on reconnect): ``epoch:offset``
for each, joined by ``,``, the epoch percent-encoded so that it can hold any
character. A client that reconnects with such an id resumes every channel
exactly where it stood. Nothing here touches a socket.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

from orbiter.model import StreamPosition

CONTENT_TYPE = "text/event-stream; charset=utf-8"
#: A comment: keeps proxies and the browser from timing the stream out.
HEARTBEAT = b": ping\n\n"
#: Longest ``Last-Event-ID`` accepted (128 channels of long epochs fit easily).
MAX_EVENT_ID = 16_384
_MAX_EPOCH = 128
_POSITION = re.compile(r"([A-Za-z0-9%._~-]{1,384}):(0|[1-9][0-9]{0,17})")


class BadEventId(ValueError):
    """A ``Last-Event-ID`` that orbiter did not issue for this URL."""


def event(data: bytes, *, name: str | None = None, id: str | None = None) -> bytes:
    """One event: ``data`` (split into ``data:`` lines at newlines), its type and id."""
    head = b""
    if name is not None:
        _check_field("event name", name)
        head += b"event: " + name.encode() + b"\n"
    if id is not None:
        _check_field("event id", id)
        head += b"id: " + id.encode() + b"\n"
    body = b"".join(b"data: " + line + b"\n" for line in data.split(b"\n"))
    return head + body + b"\n"


def _check_field(what: str, value: str) -> None:
    if "\n" in value or "\r" in value or "\0" in value:
        raise ValueError(f"an SSE {what} cannot hold a line break or NUL: {value!r}")


def encode_positions(positions: list[StreamPosition]) -> str:
    """The event id for these channel positions (in the URL's channel order)."""
    return ",".join(f"{quote(p.epoch, safe='')}:{p.offset}" for p in positions)


def parse_positions(text: str, count: int) -> list[StreamPosition]:
    """Read an id made by :func:`encode_positions` for ``count`` channels.

    Raises :class:`BadEventId`, naming the problem, for anything else.
    """
    if len(text) > MAX_EVENT_ID:
        raise BadEventId(f"Last-Event-ID is longer than {MAX_EVENT_ID} characters")
    parts = text.split(",")
    if len(parts) != count:
        raise BadEventId(
            f"Last-Event-ID holds {len(parts)} channel positions but the URL names "
            f"{count} channels (it must be an id this endpoint sent for the same URL)"
        )
    positions = []
    for i, part in enumerate(parts):
        match = _POSITION.fullmatch(part)
        if match is None:
            raise BadEventId(f"Last-Event-ID position {i + 1} is not 'epoch:offset': {part[:40]!r}")
        try:
            epoch = unquote(match.group(1), errors="strict")
        except UnicodeDecodeError:
            epoch = ""
        if not epoch or len(epoch) > _MAX_EPOCH:
            raise BadEventId(f"Last-Event-ID position {i + 1} has a malformed epoch")
        positions.append(StreamPosition(int(match.group(2)), epoch))
    return positions
