"""SockJS frames: the ``o``, ``h``, ``a[...]`` and ``c[code,"reason"]`` the server
writes, and the JSON message arrays it reads.

Pure functions, no I/O. Frames are ``str``; each transport envelope turns
them into bytes. JSON is written with SockJS's escaping: besides what JSON
itself escapes, the code points that browsers mangle in transit
(``U+200C..U+200F``, ``U+2028..U+202F``, ``U+2060..U+206F``,
``U+FFF0..U+FFFF``) go out as ``\\u`` escapes. What the client sends is a JSON
array of strings (or, on a WebSocket, also one JSON string); the client
escapes a longer list of code points, which plain JSON decoding undoes.

A channel's batch of publications goes to many sessions: :func:`encode_messages`
turns it into :class:`Encoded` array elements once, and every session's
``a[...]`` frame joins those with whatever else it queued.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

#: Code points the server must escape (those below U+0020 orjson escapes already).
_SERVER_ESCAPED = re.compile("[\u200c-\u200f\u2028-\u202f\u2060-\u206f\ufff0-\uffff]")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def encode_json(value: Any) -> str:
    """``value`` as JSON text, with SockJS's extra escaping."""
    return _SERVER_ESCAPED.sub(_escape, orjson.dumps(value).decode())


# --------------------------------------------------------------------------- frames


@dataclass(frozen=True, slots=True)
class Open:
    """The session is open: the first frame of every session."""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Nothing to say, but the connection is alive."""


@dataclass(frozen=True, slots=True, eq=False)
class Encoded:
    """Messages already JSON-encoded as the elements of an ``a[...]`` array.

    ``text`` is ``encode_json(list(messages))`` without its brackets (SockJS
    escaping included), so it joins other elements with a comma; ``size`` is
    the messages' UTF-8 bytes. One object is shared by every session that
    sends these messages.
    """

    messages: tuple[str, ...]
    text: str
    size: int


def encode_messages(messages: Sequence[bytes]) -> Encoded:
    """UTF-8 ``messages`` (a shared batch's) as :class:`Encoded` elements."""
    strings = tuple(m.decode() for m in messages)
    return Encoded(strings, encode_json(strings)[1:-1], sum(map(len, messages)))


@dataclass(frozen=True, slots=True)
class Messages:
    """Messages for the client, oldest first: single ones, and pre-encoded runs."""

    messages: tuple[str | Encoded, ...]

    def strings(self) -> list[str]:
        """Every message, in order, as its own string."""
        out: list[str] = []
        for part in self.messages:
            if isinstance(part, str):
                out.append(part)
            else:
                out.extend(part.messages)
        return out


@dataclass(frozen=True, slots=True)
class Close:
    """The session is closed (or this receiver is refused) with a code and a reason."""

    code: int
    reason: str


Frame = Open | Heartbeat | Messages | Close

OPEN = Open()
HEARTBEAT = Heartbeat()
#: What a second receiver on the same session gets.
ANOTHER_CONNECTION = Close(2010, "Another connection still open")
#: Why a session ends when its receiving connection broke mid-request.
INTERRUPTED = Close(1002, "Connection interrupted")
#: Why a session ends when its client sent a message over the size limit.
MESSAGE_TOO_BIG = Close(1009, "message too big")


def encode_frame(frame: Frame) -> str:
    """The frame's text: ``o``, ``h``, ``a[...]`` or ``c[code,"reason"]``."""
    if isinstance(frame, Messages):
        return "a[" + _elements(frame.messages) + "]"
    if isinstance(frame, Close):
        return "c" + encode_json([frame.code, frame.reason])
    if isinstance(frame, Heartbeat):
        return "h"
    return "o"


def _elements(parts: tuple[str | Encoded, ...]) -> str:
    """The JSON array elements of ``parts``: runs of single messages encoded here,
    :class:`Encoded` ones as they are."""
    if len(parts) == 1 and isinstance(parts[0], Encoded):  # a batch alone: the usual case
        return parts[0].text
    texts: list[str] = []
    run: list[str] = []
    for part in parts:
        if isinstance(part, str):
            run.append(part)
            continue
        if run:
            texts.append(encode_json(run)[1:-1])
            run = []
        if part.text:
            texts.append(part.text)
    if run:
        texts.append(encode_json(run)[1:-1])
    return ",".join(texts)


# --------------------------------------------------------------------------- client input


class PayloadError(ValueError):
    """A body of messages the server cannot accept; the text is the protocol's error."""


PAYLOAD_EXPECTED = "Payload expected."
BROKEN_JSON = "Broken JSON encoding."


def decode_messages(body: bytes | str) -> list[str]:
    """The messages in an ``xhr_send``/``jsonp_send`` body: a JSON array of strings."""
    if not body:
        raise PayloadError(PAYLOAD_EXPECTED)
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise PayloadError(BROKEN_JSON) from None
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        raise PayloadError(PAYLOAD_EXPECTED)
    return value


def decode_websocket(text: str | bytes) -> list[str]:
    """The messages in one WebSocket frame: a JSON array of strings, or one string.

    An empty frame holds no message.
    """
    if not text:
        return []
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise PayloadError(BROKEN_JSON) from None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        raise PayloadError(PAYLOAD_EXPECTED)
    return value


def largest_message_size(messages: Sequence[str]) -> int:
    """The largest UTF-8 size among ``messages`` (0 for none)."""
    return max((len(m.encode()) for m in messages), default=0)
