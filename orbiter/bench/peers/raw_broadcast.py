"""The floor of a Python push server: a bare uvloop protocol that only moves bytes.

Not a server anyone should run: it checks nothing, parses no JSON, keeps no
history, numbers nothing and answers every publish ``ok``. It is here to
measure what any Python server on uvloop pays in the interpreter and the
kernel for the I/O of a scenario alone, so that a peer's figure can be
read against it (``many-channels``: one subscriber write and an eighth of
a read and of an answer per publication).

It speaks the ``broadcast`` flavor: ``GET /ws?channel=C`` with a WebSocket
handshake subscribes (frames from the client are ignored; a close ends it),
``POST /pub?channel=C`` with a ``Content-Length`` body writes the body as one
text frame to each subscriber of ``C`` at once, and answers; pipelined
requests are answered in one write per read. Run: ``python -m
orbiter.bench.peers.raw_broadcast PORT``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

import uvloop

from orbiter.protocol.websocket import text_frame
from orbiter.protocol.websocket_handshake import accept_value

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
_BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_MAX_HEAD = 8192


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def _channel(head: bytes) -> bytes:
    target = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b""
    _, _, query = target.partition(b"?channel=")
    return query


class Connection(asyncio.Protocol):
    """A publisher's keep-alive connection, until a WebSocket handshake makes it a subscriber."""

    def __init__(self, channels: dict[bytes, set[asyncio.Transport]]) -> None:
        self._channels = channels
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._subscribed: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self._subscribed is not None and self._transport is not None:
            self._channels.get(self._subscribed, set()).discard(self._transport)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        if self._subscribed is not None:
            if data[:1] and data[0] & 0x0F == 0x8:  # a close frame (unmasked here: only its op)
                transport.close()
            return
        buffer = self._buffer + data if self._buffer else data
        answers: list[bytes] = []
        pos = 0
        while True:
            end = buffer.find(b"\r\n\r\n", pos)
            if end < 0:
                if len(buffer) - pos > _MAX_HEAD:
                    transport.write(_BAD)
                    transport.close()
                    return
                break
            head = buffer[pos:end]
            if head.startswith(b"GET "):
                self._handshake(transport, head)
                return
            length = _header(head, b"content-length")
            if length is None or not length.isdigit():
                transport.write(b"".join(answers) + _BAD)
                transport.close()
                return
            body_end = end + 4 + int(length)
            if body_end > len(buffer):
                break
            frame = text_frame(buffer[end + 4 : body_end])
            for subscriber in self._channels.get(_channel(head), ()):
                subscriber.write(frame)
            answers.append(_OK)
            pos = body_end
        self._buffer = buffer[pos:]
        if answers:
            transport.write(b"".join(answers))

    def _handshake(self, transport: asyncio.Transport, head: bytes) -> None:
        key = _header(head, b"sec-websocket-key")
        if key is None:
            transport.write(_BAD)
            transport.close()
            return
        # RFC 6455's accept value, from the one place orbiter computes it (a SHA-1, as before).
        accept = accept_value(key.decode("latin-1")).encode()
        transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self._subscribed = _channel(head)
        self._channels.setdefault(self._subscribed, set()).add(transport)
        self._buffer = b""


async def serve(port: int) -> None:
    channels: dict[bytes, set[asyncio.Transport]] = {}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(channels), "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    uvloop.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
