"""The server side of an open RFC 6455 connection, without I/O: frames in, messages out.

After the opening handshake (:mod:`orbiter.protocol.websocket_handshake`),
:class:`ServerConnection` takes the client's bytes (:meth:`~ServerConnection.receive_data`)
and gives back one event at a time (:meth:`~ServerConnection.next_event`), so
that its user may stop between two messages (orbiter does while a message's
commands run) and go on later with what was already received:

- :class:`Message`: a whole text (``str``) or binary (``bytes``) message,
  reassembled from its fragments; at most ``max_message_size`` bytes.
- :class:`PeerClosed`: the client's close frame (code, reason).
- :class:`Failed`: the connection failed: a protocol error (1002), invalid
  UTF-8 (1007) or a message over the limit (1009). After 1002 and 1007
  nothing more can be read; after 1009 the closing handshake goes on.

Pings are answered and close frames replied to by themselves: what is to be
written is in :meth:`~ServerConnection.data_to_send` after each call. Of the
pings parsed before it is taken, only the latest is answered (RFC 6455
section 5.5.3 allows it), so a flood of pings costs one pong per read. A
frame that arrives in pieces is gathered apart, each byte copied once, so
reassembly costs time linear in the frame's size however it is cut up.
Outgoing data frames are not made here: orbiter frames a batch once for all
its subscribers (:func:`text_frame`) and writes those bytes as they are.

A parser of our own rather than wsproto, which costs several times more
memory per connection and CPU per frame (the figures are in
``docs/benchmarks.md``, "Parts chosen by measurement"). It checks what
RFC 6455 asks of a server: masking, reserved bits, opcodes, continuation
order, control frames (at most 125 bytes, not fragmented), close codes and
UTF-8 of text messages and close reasons; a data frame that would take its
message past ``max_message_size`` fails as soon as its header is read, and
its payload is dropped unread into memory.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

#: Close codes (RFC 6455 section 7.4.1).
PROTOCOL_ERROR = 1002
INVALID_DATA = 1007
MESSAGE_TOO_BIG = 1009

_PING = b"\x89\x00"


class Message:
    """One whole message from the client: ``str`` for text, ``bytes`` for binary."""

    __slots__ = ("data",)

    def __init__(self, data: str | bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"Message({self.data!r})"


class PeerClosed:
    """The client sent its close frame (1005 if it had no code)."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code, self.reason = code, reason

    def __repr__(self) -> str:
        return f"PeerClosed({self.code}, {self.reason!r})"


class Failed:
    """The connection failed; a close frame with ``code`` is in ``data_to_send``."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code, self.reason = code, reason

    def __repr__(self) -> str:
        return f"Failed({self.code}, {self.reason!r})"


Event = Message | PeerClosed | Failed


#: Close codes a client may send (RFC 6455 section 7.4, and 1012-1014 registered since).
_VALID_CLOSE = frozenset((1000, 1001, 1002, 1003, *range(1007, 1015), *range(3000, 5000)))


#: How a frame's payload is unmasked: ``unmask(payload, mask)`` gives the payload XORed with
#: the 4-byte mask repeated. :func:`unmask_payload` by default; the transport adapter gives
#: a C loop (this core imports no I/O library).
Unmask = Callable[[bytes, bytes], bytes]


class ServerConnection:
    """One open connection's frames, for a server (clients mask, we do not)."""

    __slots__ = (
        "_broken",
        "_buf",
        "_fragment",
        "_limit",
        "_need",
        "_out",
        "_partial",
        "_parts",
        "_peer_closed",
        "_pos",
        "_size",
        "_skip",
        "_unmask",
        "frame_limit",
        "frames",
        "open",
    )

    def __init__(self, max_message_size: int, unmask: Unmask | None = None) -> None:
        self._limit = max_message_size
        #: XORs a frame's payload with its mask (a faster one can be given: see :data:`Unmask`).
        self._unmask: Unmask = unmask_payload if unmask is None else unmask
        #: Received bytes not parsed yet: ``_buf[_pos:]``.
        self._buf = b""
        self._pos = 0
        #: A frame whose header is read but whose payload is still coming, while it
        #: comes: ``_buf`` is then empty, and the frame is whole at ``_need`` bytes.
        self._partial: bytearray | None = None
        self._need = 0
        #: Payload bytes still to drop (of a data frame over the limit, after its 1009).
        self._skip = 0
        #: The opcode of the fragmented message being received, its parts and their size.
        self._fragment = 0
        self._parts: list[bytes] = []
        self._size = 0
        self._out = b""
        #: May data frames (and pings) be written? Not once either side sent a close
        #: frame, nor after a failure (read-only outside; an attribute, not a property:
        #: it is read per write, on the fan-out path).
        self.open = True
        #: The client's close frame came (ours went, or goes back at once).
        self._peer_closed = False
        #: A protocol error or invalid data: nothing more can be parsed.
        self._broken = False
        #: Frames parsed since the caller last set it to 0, and how many it may be
        #: (None: no bound); at the limit :meth:`next_event` returns None until the
        #: caller resets ``frames``, and :attr:`starved` says so. (Counting up keeps
        #: ``frames`` a small, shared int object: no memory per idle connection.)
        self.frames = 0
        self.frame_limit: int | None = None

    @property
    def closed(self) -> bool:
        """Are both close frames through, or did the connection fail past reading?"""
        return self._broken or self._peer_closed

    @property
    def starved(self) -> bool:
        """Is a received frame waiting for :attr:`frames` to be reset?"""
        limit = self.frame_limit
        return (
            limit is not None
            and self.frames >= limit
            and len(self._buf) > self._pos
            and not self.closed
        )

    def receive_data(self, data: bytes) -> None:
        """Bytes from the client (ignored once :attr:`closed`)."""
        if self.closed:
            return
        skip = self._skip
        if skip:
            dropped = min(skip, len(data))
            self._skip = skip - dropped
            data = data[dropped:]
        partial = self._partial
        if partial is not None:  # each byte copied once, however the frame is cut up
            partial += data
            if len(partial) >= self._need:
                self._buf, self._partial = bytes(partial), None
            return
        if self._pos:
            self._buf = self._buf[self._pos :] + data
            self._pos = 0
        elif self._buf:
            self._buf += data
        else:
            self._buf = data

    def data_to_send(self) -> bytes:
        """What is to be written now (pongs, close frames); then empty until more."""
        out, self._out = self._out, b""
        return out

    def ping(self) -> bytes:
        """An empty ping frame to write, or nothing once closing."""
        return _PING if self.open else b""

    def close(self, code: int, reason: str) -> bytes:
        """Start the closing handshake: the close frame to write (nothing if already closing)."""
        if not self.open:
            return b""
        self.open = False
        return _close_frame(code, reason)

    def next_event(self) -> Event | None:
        """The next event in what was received; None until more bytes come."""
        while not self.closed and not self._skip:
            buf, pos = self._buf, self._pos
            available = len(buf) - pos
            if available < 2:
                return None
            limit = self.frame_limit
            if limit is not None and self.frames >= limit:
                return None
            first, second = buf[pos], buf[pos + 1]
            if not second & 0x80:
                return self._fail(PROTOCOL_ERROR, "an unmasked frame from the client")
            length = second & 0x7F
            start = pos + 2
            if length == 126:
                if available < 4:
                    return None
                length = int.from_bytes(buf[start : start + 2], "big")
                start += 2
            elif length == 127:
                if available < 10:
                    return None
                length = int.from_bytes(buf[start : start + 8], "big")
                start += 8
                if length >> 63:
                    return self._fail(PROTOCOL_ERROR, "a frame length with its top bit set")
            opcode, fin = first & 0x0F, first & 0x80
            if first & 0x70:
                return self._fail(PROTOCOL_ERROR, "reserved bits set (no extension was agreed)")
            if opcode >= 0x8:
                if opcode > 0xA:
                    return self._fail(PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
                if not fin:
                    return self._fail(PROTOCOL_ERROR, "a fragmented control frame")
                if length > 125:
                    return self._fail(PROTOCOL_ERROR, "a control frame over 125 bytes")
            elif opcode > 0x2:
                return self._fail(PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
            elif (opcode == 0) != bool(self._fragment):
                what = "a continuation outside" if opcode == 0 else "a new message inside"
                return self._fail(PROTOCOL_ERROR, f"{what} a fragmented message")
            elif self._size + length > self._limit:
                end = start + 4 + length
                self._pos = min(end, len(buf))
                self._skip = end - self._pos
                self._fragment, self._parts, self._size = 0, [], 0
                if not self.open:
                    continue  # closing: dropped anyway
                return self._fail(
                    MESSAGE_TOO_BIG,
                    f"message over {self._limit} bytes (limits.max_message_size)",
                    broken=False,
                )
            end = start + 4 + length
            if len(buf) < end:
                # Gather the rest apart (not by joining each read to what came before,
                # which would copy a frame sent in small pieces once per piece).
                self._partial = bytearray(memoryview(buf)[pos:])
                self._need = end - pos
                self._buf, self._pos = b"", 0
                return None
            payload = self._unmask(buf[start + 4 : end], buf[start : start + 4])
            self._pos = end
            self.frames += 1
            if opcode >= 0x8:
                event = self._control(opcode, payload)
            else:
                event = self._data(opcode, payload, bool(fin))
            if event is not None:
                return event
        return None

    def _control(self, opcode: int, payload: bytes) -> Event | None:
        if opcode == 0x9:  # ping
            if self.open:
                # While open, ``_out`` holds nothing but a pong not yet taken: RFC 6455
                # (section 5.5.3) lets it be replaced by the pong of the latest ping.
                self._out = bytes((0x8A, len(payload))) + payload
            return None
        if opcode == 0xA:  # pong: any byte received already shows the client is there
            return None
        if not payload:
            code, reason = 1005, ""
        elif len(payload) == 1:
            return self._fail(PROTOCOL_ERROR, "a close frame of 1 byte")
        else:
            code = int.from_bytes(payload[:2], "big")
            if code not in _VALID_CLOSE:
                return self._fail(PROTOCOL_ERROR, f"close code {code} may not be sent")
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                return self._fail(INVALID_DATA, "a close reason that is not UTF-8")
        if self.open:
            self._out += _close_frame(code, reason) if code != 1005 else b"\x88\x00"
            self.open = False
        self._peer_closed = True
        return PeerClosed(code, reason)

    def _data(self, opcode: int, payload: bytes, fin: bool) -> Event | None:
        if opcode:  # the first frame of a message
            if fin:
                return self._message(opcode, payload)
            self._fragment, self._parts, self._size = opcode, [payload], len(payload)
            return None
        self._parts.append(payload)
        self._size += len(payload)
        if not fin:
            return None
        opcode, parts = self._fragment, self._parts
        self._fragment, self._parts, self._size = 0, [], 0
        return self._message(opcode, b"".join(parts))

    def _message(self, opcode: int, data: bytes) -> Event | None:
        if opcode == 0x2:
            return Message(data) if self.open else None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return self._fail(INVALID_DATA, "a text message that is not UTF-8")
        return Message(text) if self.open else None  # closing: what the client sends is dropped

    def _fail(self, code: int, reason: str, *, broken: bool = True) -> Failed:
        if self.open:
            self._out += _close_frame(code, reason)
            self.open = False
        self._broken = self._broken or broken
        if broken:
            self._buf, self._pos, self._partial = b"", 0, None
        return Failed(code, reason)


def unmask_payload(payload: bytes, mask: bytes) -> bytes:
    """``payload`` XORed with the 4-byte ``mask`` repeated (RFC 6455 section 5.3), as one
    big-integer XOR."""
    n = len(payload)
    if not n:
        return b""
    key = int.from_bytes((mask * ((n + 3) // 4))[:n], "big")
    return (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")


def _close_frame(code: int, reason: str) -> bytes:
    """A close frame with ``code`` and as much of ``reason`` as fits (whole characters)."""
    cut = reason.encode("utf-8")[:123].decode("utf-8", "ignore").encode("utf-8")
    return bytes((0x88, 2 + len(cut))) + code.to_bytes(2, "big") + cut


#: A text frame's header: under 126 bytes of payload, made once for each length (not a
#: tuple and a ``bytes`` call per frame), else packed by a format compiled once.
_SHORT_TEXT_HEADERS = tuple(bytes((0x81, n)) for n in range(126))
_PACK_16 = struct.Struct("!BBH").pack
_PACK_64 = struct.Struct("!BBQ").pack


def text_frame(payload: bytes) -> bytes:
    """One unmasked, final WebSocket text frame (RFC 6455 section 5.2)."""
    n = len(payload)
    if n < 126:
        return _SHORT_TEXT_HEADERS[n] + payload
    if n < 65536:
        return _PACK_16(0x81, 126, n) + payload
    return _PACK_64(0x81, 127, n) + payload
