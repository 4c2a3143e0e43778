"""STOMP 1.0, 1.1 and 1.2 frames without I/O: an incremental parser, a serialiser,
and the negotiation rules (version, heart-beat).

:class:`FrameParser` takes bytes as they arrive (a frame may be split
anywhere) and returns each complete :class:`Frame`; input that cannot be a
frame raises :class:`FrameError`, whose message says what was wrong. EOLs
between frames are heart-beats and are skipped. Lines may end in ``\\n`` or
``\\r\\n`` (the ``\\r`` is dropped in every version, so 1.0 and 1.1 clients
that send it are understood too). Header escapes (``\\n``, ``\\c``,
``\\\\``, and ``\\r`` in 1.2) are decoded for 1.1 and 1.2 frames other than
``CONNECT``/``STOMP``/``CONNECTED``, and an undefined escape is an error.
The first of repeated headers wins. A ``content-length`` body may hold NUL
octets; the command and headers may not, and a header name (once unescaped)
holds no control character. Limits bound the header count, each header line,
and the body.

A CONNECT's ``heart-beat`` values are held to :data:`HEART_BEAT_MIN` ..
:data:`HEART_BEAT_MAX` milliseconds (0 stays "none").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

#: Versions this implementation speaks, oldest first.
VERSIONS = ("1.0", "1.1", "1.2")
#: Frames whose headers are never escaped (backward compatibility with 1.0).
UNESCAPED_COMMANDS = frozenset({"CONNECT", "STOMP", "CONNECTED"})

Header = tuple[str, str]

#: The shortest heart-beat interval a CONNECT may ask for (ms); a smaller nonzero value is
#: raised to it, so that no connection has the broker beat (or watch) every millisecond.
HEART_BEAT_MIN = 100
#: The longest (ms): one hour; a larger value is lowered to it.
HEART_BEAT_MAX = 3_600_000

#: C0 controls and DEL: none may be part of a header name.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class FrameError(ValueError):
    """Bytes that are not a well-formed STOMP frame; the message says why."""


@dataclass(frozen=True, slots=True)
class Frame:
    command: str
    headers: Sequence[Header] = ()
    body: bytes = b""
    _first: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, value in self.headers:
            self._first.setdefault(name, value)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The header's value (the first, if repeated), or ``default``."""
        return self._first.get(name, default)

    def __contains__(self, name: str) -> bool:
        return name in self._first

    def first_headers(self) -> list[Header]:
        """Each header once, with its first value, in the order they came."""
        return list(self._first.items())


@dataclass(frozen=True, slots=True)
class Limits:
    max_headers: int = 64
    #: Bytes in one header line (name, colon and value, escaped).
    max_header_line: int = 8192
    max_body: int = 65_536


_DECODE_11 = {ord("n"): "\n", ord("c"): ":", ord("\\"): "\\"}
_DECODE_12 = {**_DECODE_11, ord("r"): "\r"}


def unescape(value: str, version: str) -> str:
    """Decode a 1.1/1.2 header name or value; an undefined escape raises FrameError."""
    if "\\" not in value:
        return value
    table = _DECODE_12 if version == "1.2" else _DECODE_11
    out: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\":
            nxt = ord(value[i + 1]) if i + 1 < len(value) else -1
            if nxt not in table:
                shown = "\\" + (chr(nxt) if nxt >= 0 else "")
                raise FrameError(f"undefined escape sequence {shown!r} in a header")
            out.append(table[nxt])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def escape(value: str, version: str) -> str:
    """Encode a header name or value for ``version`` (1.0 has no escapes: EOLs become spaces)."""
    if version == "1.0":
        return value.replace("\r", " ").replace("\n", " ")
    value = value.replace("\\", "\\\\").replace("\n", "\\n").replace(":", "\\c")
    if version == "1.2":
        return value.replace("\r", "\\r")
    return value.replace("\r", " ")


def encode_frame(
    command: str, headers: Iterable[Header] = (), body: bytes = b"", version: str = "1.2"
) -> bytes:
    """One frame as bytes; frames with a body get a ``content-length``."""
    if command in UNESCAPED_COMMANDS:
        lines = [f"{escape(k, '1.0').replace(':', '')}:{escape(v, '1.0')}" for k, v in headers]
    else:
        lines = [f"{escape(k, version)}:{escape(v, version)}" for k, v in headers]
    if body or command in ("MESSAGE", "ERROR", "SEND"):
        lines.append(f"content-length:{len(body)}")
    head = "\n".join([command, *lines]) + "\n\n"
    return head.encode() + body + b"\x00"


class FrameParser:
    """Turns a byte stream into frames, incrementally.

    ``version`` governs header escaping; set it once the session's version is
    negotiated (frames before that are ``CONNECT``/``STOMP``, never escaped).
    """

    __slots__ = (
        "_body_start",
        "_buf",
        "_head",
        "_pos",
        "_scan",
        "limits",
        "pause_after_connect",
        "version",
    )

    def __init__(
        self,
        limits: Limits | None = None,
        version: str = "1.0",
        *,
        pause_after_connect: bool = False,
    ) -> None:
        self.limits = limits or Limits()
        self.version = version
        #: Stop after a CONNECT/STOMP frame, leaving what follows buffered, so that the
        #: frames after it are parsed with the version it negotiates (feed ``b""`` to go on).
        self.pause_after_connect = pause_after_connect
        self._buf = bytearray()
        #: Where the next frame (or the heart-beats before it) starts in the buffer.
        self._pos = 0
        #: Where the search for the end of the headers (or the body's NUL) resumes.
        self._scan = 0
        #: Parsed command and headers of the frame whose body is awaited.
        self._head: tuple[str, list[Header], int | None] | None = None
        self._body_start = 0

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a returned frame."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> list[Frame]:
        """Take more bytes; return the frames they complete, in order."""
        self._buf += data
        frames: list[Frame] = []
        try:
            while (frame := self._next()) is not None:
                frames.append(frame)
                if self.pause_after_connect and frame.command in ("CONNECT", "STOMP"):
                    break
        finally:
            # Drop what was consumed once per feed (not once per frame: no quadratic copying).
            if self._pos:
                shift = self._pos
                del self._buf[:shift]
                self._pos = 0
                self._scan = max(0, self._scan - shift)
                self._body_start -= shift
        return frames

    def _next(self) -> Frame | None:
        buf = self._buf
        if self._head is None:
            # Heart-beats: EOLs between frames.
            pos = self._pos
            size = len(buf)
            while pos < size and buf[pos] in (10, 13):
                if buf[pos] == 13 and (pos + 1 >= size or buf[pos + 1] != 10):
                    if pos + 1 >= size:
                        break
                    raise FrameError("a carriage return not followed by a line feed")
                pos += 1
            self._pos = pos
            if pos >= size:
                return None
            scan = max(self._scan, pos)
            end = buf.find(b"\n\n", scan)
            end_crlf = buf.find(b"\n\r\n", scan)
            if end_crlf != -1 and (end == -1 or end_crlf < end):
                end, sep = end_crlf, 3
            else:
                sep = 2
            if end == -1:
                limit = self.limits.max_header_line * (self.limits.max_headers + 1)
                if size - pos > limit:
                    raise FrameError(f"frame headers longer than {limit} bytes")
                self._scan = max(pos, size - 3)
                return None
            self._head = self._parse_head(bytes(buf[pos:end]))
            self._body_start = self._scan = end + sep
        command, headers, length = self._head
        start = self._body_start
        max_body = self.limits.max_body
        if length is not None:
            if len(buf) < start + length + 1:
                return None
            if buf[start + length] != 0:
                raise FrameError(
                    f"frame body is not followed by a NUL octet after content-length {length}"
                )
            stop = start + length
        else:
            stop = buf.find(b"\x00", max(self._scan, start))
            if stop == -1:
                if len(buf) - start > max_body:
                    raise FrameError(f"frame body larger than {max_body} bytes (or NUL missing)")
                self._scan = len(buf)
                return None
            if stop - start > max_body:
                raise FrameError(f"frame body larger than {max_body} bytes")
        body = bytes(buf[start:stop])
        self._pos = self._scan = stop + 1
        self._head = None
        return Frame(command, headers, body)

    def _parse_head(self, raw: bytes) -> tuple[str, list[Header], int | None]:
        limits = self.limits
        lines = raw.split(b"\n")
        if len(lines) - 1 > limits.max_headers:
            raise FrameError(f"more than {limits.max_headers} headers in a frame")
        if any(len(line) > limits.max_header_line for line in lines):
            raise FrameError(f"a header line longer than {limits.max_header_line} bytes")
        try:
            text = [line.decode("utf-8") for line in lines]
        except UnicodeDecodeError:
            raise FrameError("frame command or headers are not UTF-8") from None
        text = [line[:-1] if line.endswith("\r") else line for line in text]
        command = text[0]
        if not command:
            raise FrameError("frame has no command")
        if b"\x00" in raw:
            raise FrameError("a NUL octet in the frame's command or headers")
        if len(command) > 32:
            raise FrameError(f"unknown command {command[:32]!r}...")
        escaped = self.version != "1.0" and command not in UNESCAPED_COMMANDS
        headers: list[Header] = []
        for line in text[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise FrameError(f"header line {line[:64]!r} has no colon")
            if escaped:
                name, value = unescape(name, self.version), unescape(value, self.version)
            if not name:
                raise FrameError("a header with an empty name")
            if not name.isprintable() and _CONTROL.search(name) is not None:
                raise FrameError(f"header name {name[:64]!r} holds a control character")
            headers.append((name, value))
        length: int | None = None
        for name, value in headers:
            if name == "content-length":
                if not (value.isascii() and value.isdigit()) or len(value) > 12:
                    raise FrameError(f"content-length {value!r} is not a number of octets")
                length = int(value)
                if length > limits.max_body:
                    raise FrameError(
                        f"content-length {length} is larger than the limit of "
                        f"{limits.max_body} bytes"
                    )
                break
        return command, headers, length


# --------------------------------------------------------------------- negotiation


def negotiate_version(accept_version: str | None) -> str | None:
    """The highest version both sides speak; None if none is shared.

    No ``accept-version`` header means a 1.0 client.
    """
    if accept_version is None:
        return "1.0"
    offered = {v.strip() for v in accept_version.split(",")}
    for version in reversed(VERSIONS):
        if version in offered:
            return version
    return None


def parse_heart_beat(value: str | None) -> tuple[int, int]:
    """``cx,cy`` in milliseconds; ``0,0`` when absent. Raises FrameError when malformed.

    Each nonzero value is held to :data:`HEART_BEAT_MIN` .. :data:`HEART_BEAT_MAX`.
    """
    if value is None:
        return 0, 0
    parts = value.split(",")
    numbers = [p.strip() for p in parts]
    if len(parts) != 2 or not all(n.isascii() and n.isdigit() and len(n) <= 12 for n in numbers):
        raise FrameError(
            f"heart-beat {value[:40]!r} is not two whole numbers of milliseconds 'cx,cy'"
        )
    cx, cy = (min(max(int(n), HEART_BEAT_MIN), HEART_BEAT_MAX) if int(n) else 0 for n in numbers)
    return cx, cy


def heart_beat_intervals(client: tuple[int, int], server: tuple[int, int]) -> tuple[int, int]:
    """(ms between the server's beats, ms within which the client must send); 0 = none.

    ``client`` is the CONNECT's ``cx,cy``, ``server`` the CONNECTED's ``sx,sy``.
    """
    cx, cy = client
    sx, sy = server
    send = max(sx, cy) if sx and cy else 0
    receive = max(cx, sy) if cx and sy else 0
    return send, receive
