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
written is in :meth:`~ServerConnection.data_to_send` after each call.
Outgoing data frames are not made here: orbiter frames a batch once for all
its subscribers (:func:`text_frame`) and writes those bytes as they are.

Frame parsing, unmasking, UTF-8 checking and the close state machine are
wsproto's (``wsproto.connection.Connection``, meant for use after one's own
handshake); this module adds the message size limit, reassembly and events
pulled one at a time. Per connection it costs about 1.7 KiB (tracemalloc,
10,000 connections), the bulk of it wsproto's; a frame parser of our own
could be smaller, but this meets the idle-memory target (docs/benchmarks.md).
"""

from __future__ import annotations

import struct

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

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


class ServerConnection:
    """One open connection's frames, for a server (clients mask, we do not)."""

    __slots__ = ("_broken", "_limit", "_out", "_parts", "_size", "_ws")

    def __init__(self, max_message_size: int) -> None:
        self._ws = Connection(ConnectionType.SERVER)
        self._limit = max_message_size
        #: The fragments of the message being received, and their size in bytes.
        self._parts: list[str | bytes] | None = None
        self._size = 0
        self._out = b""
        #: A protocol error or invalid data: nothing more can be parsed.
        self._broken = False

    @property
    def open(self) -> bool:
        """May data frames (and pings) be written? Not once either side sent a close frame."""
        return self._ws.state is ConnectionState.OPEN and not self._broken

    @property
    def closed(self) -> bool:
        """Are both close frames through, or did the connection fail past reading?"""
        return self._broken or self._ws.state is ConnectionState.CLOSED

    def receive_data(self, data: bytes) -> None:
        """Bytes from the client (ignored once :attr:`closed`)."""
        if not self.closed:
            self._ws.receive_data(data)

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
        return bytes(self._ws.send(CloseConnection(code, reason)))

    def next_event(self) -> Event | None:
        """The next event in what was received; None until more bytes come."""
        for event in self._ws.events():
            result = self._handle(event)
            if result is not None:
                return result
        return None

    def _handle(self, event: TextMessage | BytesMessage | CloseConnection | object) -> Event | None:
        if isinstance(event, TextMessage | BytesMessage):
            return self._data(event.data, event.message_finished)
        if isinstance(event, Ping):
            if self.open:
                self._out += bytes(self._ws.send(event.response()))
            return None
        if isinstance(event, CloseConnection):
            if self._ws.state in (ConnectionState.REMOTE_CLOSING, ConnectionState.CLOSED):
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    self._out += bytes(self._ws.send(event.response()))
                return PeerClosed(event.code, event.reason or "")
            # wsproto reports a frame it cannot parse as a close event of its own.
            return self._fail(event.code, event.reason or "protocol error")
        return None  # a pong: any byte received already shows the client is there

    def _data(self, chunk: str | bytes | bytearray, finished: bool) -> Event | None:
        if not self.open:
            return None  # closing: what the client still sends is dropped
        if isinstance(chunk, str):
            size = len(chunk) if chunk.isascii() else len(chunk.encode("utf-8", "surrogatepass"))
        else:
            chunk = bytes(chunk)
            size = len(chunk)
        total = self._size + size
        if total > self._limit:
            self._parts, self._size = None, 0
            return self._fail(
                MESSAGE_TOO_BIG,
                f"message over {self._limit} bytes (limits.max_message_size)",
                broken=False,
            )
        if finished and self._parts is None:
            return Message(chunk)
        if self._parts is None:
            self._parts = []
        self._parts.append(chunk)
        self._size = total
        if not finished:
            return None
        parts, self._parts, self._size = self._parts, None, 0
        if isinstance(chunk, str):
            return Message("".join(parts))  # type: ignore[arg-type]
        return Message(b"".join(parts))  # type: ignore[arg-type]

    def _fail(self, code: int, reason: str, *, broken: bool = True) -> Failed:
        if self.open:
            self._out += bytes(self._ws.send(CloseConnection(code, reason)))
        self._broken = self._broken or broken
        return Failed(code, reason)


def text_frame(payload: bytes) -> bytes:
    """One unmasked, final WebSocket text frame (RFC 6455 section 5.2)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload
