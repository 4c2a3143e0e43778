"""The hixie-76 WebSocket draft (2010), without I/O: handshake and framing.

Browsers of 2010-2011 (and proxies such as old HAProxy setups) spoke this
draft before RFC 6455; the SockJS protocol suite still checks that a server
answers it, as sockjs-node does. aiohttp refuses its handshake in its HTTP
parser, so orbiter recognises it before aiohttp sees the connection
(:func:`is_hixie76`) and speaks it itself.

Handshake: the request carries ``Sec-WebSocket-Key1`` and ``-Key2`` and,
after the head, 8 more bytes (key3). The server answers ``101`` with
``Sec-WebSocket-Origin`` and ``-Location`` and then the 16-byte MD5 of the
two key numbers and key3 (:func:`challenge_response`). Like sockjs-node, the
``101`` head goes out before key3 arrives, because HAProxy forwards key3
only once it has seen the answer.

Frames: text is ``0x00 <UTF-8> 0xFF``; ``0xFF 0x00`` asks to close; a type
byte with the high bit set is followed by a base-128 length and that many
bytes of binary data, which this draft's browsers never send (skipped).
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass, field

#: Bytes of request head accepted before the connection is refused.
MAX_HEAD = 8192
#: The request line, a header line.
_REQUEST_LINE = re.compile(rb"([A-Z]+) (\S+) HTTP/1\.[01]")
_HEADER = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*")
_KEY1 = b"sec-websocket-key1:"


class HandshakeError(ValueError):
    """The request is not a valid hixie-76 handshake; the message says why."""


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A parsed HTTP request head: method, raw target, headers (names lower-cased, first wins)."""

    method: str
    target: str
    headers: dict[str, str] = field(default_factory=dict)


def head_length(data: bytes) -> int | None:
    """The length of the head at the start of ``data`` (through the blank line), if whole."""
    end = data.find(b"\r\n\r\n")
    return None if end < 0 else end + 4


def is_hixie76(head: bytes) -> bool:
    """Does this request head carry ``Sec-WebSocket-Key1`` (the hixie-76 handshake)?"""
    return _KEY1 in head.lower()


def parse_head(head: bytes) -> RequestHead:
    """Parse a request head (``head_length`` bytes); raises HandshakeError if it is malformed."""
    lines = head.split(b"\r\n")
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        raise HandshakeError("malformed request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        header = _HEADER.fullmatch(line)
        if header is None:
            raise HandshakeError(f"malformed header line {line[:40]!r}")
        name = header.group(1).decode("ascii").lower()
        headers.setdefault(name, header.group(2).decode("latin-1"))
    return RequestHead(match.group(1).decode("ascii"), match.group(2).decode("latin-1"), headers)


def validate(request: RequestHead) -> None:
    """Raise HandshakeError unless ``request`` is a complete hixie-76 handshake."""
    if request.method != "GET":
        raise HandshakeError("a WebSocket handshake must be a GET")
    if request.headers.get("upgrade", "").lower() != "websocket":
        raise HandshakeError('Can "Upgrade" only to "WebSocket".')
    tokens = {t.strip().lower() for t in request.headers.get("connection", "").split(",")}
    if "upgrade" not in tokens:
        raise HandshakeError('"Connection" must be "Upgrade".')
    for name in ("sec-websocket-key1", "sec-websocket-key2", "host"):
        if name not in request.headers:
            raise HandshakeError(f"the {name} header is missing")
    for name in ("sec-websocket-key1", "sec-websocket-key2"):
        key_number(request.headers[name])


def key_number(key: str) -> int:
    """The number a ``Sec-WebSocket-Key1/2`` value stands for: its digits over its spaces."""
    digits = "".join(c for c in key if c.isdigit() and c.isascii())
    spaces = key.count(" ")
    if not digits or spaces == 0:
        raise HandshakeError("a Sec-WebSocket-Key needs digits and spaces")
    number = int(digits)
    if number % spaces or number // spaces > 0xFFFFFFFF:
        raise HandshakeError("a Sec-WebSocket-Key's number must be a 32-bit multiple of its spaces")
    return number // spaces


def challenge_response(key1: str, key2: str, key3: bytes) -> bytes:
    """The 16 bytes that prove the server read the handshake."""
    if len(key3) != 8:
        raise HandshakeError("key3 must be 8 bytes")
    return hashlib.md5(
        struct.pack(">II", key_number(key1), key_number(key2)) + key3, usedforsecurity=False
    ).digest()


def response_head(request: RequestHead, *, secure: bool = False) -> bytes:
    """The ``101`` head answering ``request`` (validated), without the challenge response."""
    scheme = "wss" if secure else "ws"
    lines = [
        "HTTP/1.1 101 WebSocket Protocol Handshake",
        "Upgrade: WebSocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Origin: {request.headers.get('origin', 'null')}",
        f"Sec-WebSocket-Location: {scheme}://{request.headers['host']}{request.target}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def encode_text(text: str) -> bytes:
    """One text frame."""
    return b"\x00" + text.encode() + b"\xff"


#: The closing handshake, both ways.
CLOSE_FRAME = b"\xff\x00"


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class CloseRequest:
    pass


class FrameError(ValueError):
    """The peer sent something this draft does not allow; the connection must end."""


class FrameDecoder:
    """Incremental frame parser: feed bytes, get :class:`Text` and :class:`CloseRequest` events."""

    def __init__(self, max_frame: int) -> None:
        self._max_frame = max_frame
        self._buffer = bytearray()
        self._skip = 0  # bytes of a binary frame still to skip

    def feed(self, data: bytes) -> list[Text | CloseRequest]:
        self._buffer += data
        events: list[Text | CloseRequest] = []
        buf = self._buffer
        while buf:
            if self._skip:
                taken = min(self._skip, len(buf))
                del buf[:taken]
                self._skip -= taken
                continue
            kind = buf[0]
            if kind & 0x80:
                length, used = _base128(buf, 1)
                if used is None:
                    break
                if kind == 0xFF and length == 0:
                    del buf[:used]
                    events.append(CloseRequest())
                    continue
                if length > self._max_frame:
                    raise FrameError(f"frame of {length} bytes is over the limit")
                del buf[:used]
                self._skip = length
                continue
            if kind != 0x00:
                raise FrameError(f"unknown frame type 0x{kind:02x}")
            end = buf.find(b"\xff", 1)
            if end < 0:
                if len(buf) - 1 > self._max_frame:
                    raise FrameError("frame over the limit")
                break
            try:
                text = bytes(buf[1:end]).decode()
            except UnicodeDecodeError as exc:
                raise FrameError("a text frame is not UTF-8") from exc
            del buf[: end + 1]
            events.append(Text(text))
        return events


def _base128(buf: bytearray, start: int) -> tuple[int, int | None]:
    """A base-128 length at ``buf[start:]`` and the bytes used through it (None if incomplete)."""
    length = 0
    for i in range(start, min(len(buf), start + 5)):
        b = buf[i]
        length = length * 128 + (b & 0x7F)
        if not b & 0x80:
            return length, i + 1
    if len(buf) >= start + 5:
        raise FrameError("frame length too long")
    return 0, None
