"""The floor of a Python server of orbiter's native protocol: a bare uvloop protocol.

Not a server anyone should run: it checks nothing, parses no JSON, keeps no
history and numbers nothing. It is here to measure what any Python server
on uvloop pays in the interpreter and the kernel for the I/O of a native
publish scenario alone (``many-channels-native``: one subscriber write and
a sixty-fourth of a read and of a reply frame per publication), as
``raw_broadcast`` (``uvloop-raw``) is the floor of the HTTP route.

It speaks orbiter's native protocol as the load generator does (flavor
``orbiter``, ``docs/protocol.md``): any ``GET`` with a WebSocket handshake
opens a connection; every text frame is one command, told apart by byte
search alone: a ``publish`` (its ``"channel":"C"`` and ``"data":`` found by
``find``, the data copied as raw JSON) writes the push ``{"push":"pub",
"channel":C,"data":D}`` as one frame to each subscriber of ``C`` at once;
a ``subscribe`` adds the connection to its channel; anything else (say
``connect``) is only answered. Every command is answered
``{"id":N,"result":{}}`` (``N`` copied from the command), the answers to
one read in one frame (separated by ``\\n``, as orbiter batches them), in
one write. A close frame ends the connection. Run: ``python -m
orbiter.bench.peers.raw_native PORT``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

import uvloop
from aiohttp._websocket.helpers import websocket_mask  # (aiohttp is pinned: pyproject.toml)

from orbiter.bench.peers.raw_broadcast import _BAD, _MAX_HEAD, _header
from orbiter.protocol.websocket import text_frame
from orbiter.protocol.websocket_handshake import accept_value

_NO_MASK = b"\0\0\0\0"
_CLOSE = 0x8


def _string_after(command: bytes, key: bytes) -> bytes:
    """The JSON string's raw bytes after ``key`` (say ``b'"channel":"'``), found by search."""
    start = command.find(key) + len(key)
    return command[start : command.find(b'"', start)]


class Connection(asyncio.Protocol):
    """One WebSocket connection: a subscriber, the publisher, or both."""

    def __init__(self, channels: dict[bytes, set[asyncio.Transport]]) -> None:
        self._channels = channels
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._open = False
        self._subscribed: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        for channel in self._subscribed:
            self._channels.get(channel, set()).discard(cast(asyncio.Transport, self._transport))

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        buffer = self._buffer + data if self._buffer else data
        if not self._open:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    transport.write(_BAD)
                    transport.close()
                else:
                    self._buffer = buffer
                return
            if not self._handshake(transport, buffer[:end]):
                return
            buffer = buffer[end + 4 :]
        replies: list[bytes] = []
        pos = 0
        size = len(buffer)
        while size - pos >= 2:
            length = buffer[pos + 1] & 127
            start = pos + 2
            if length == 126:
                length = int.from_bytes(buffer[start : start + 2], "big")
                start += 2
            elif length == 127:
                length = int.from_bytes(buffer[start : start + 8], "big")
                start += 8
            masked = buffer[pos + 1] & 128
            end = start + (4 if masked else 0) + length
            if end > size:
                break
            if buffer[pos] & 0x0F == _CLOSE:
                transport.close()
                return
            if masked:
                mask = buffer[start : start + 4]
                command = buffer[start + 4 : end]
                if mask != _NO_MASK:
                    unmasked = bytearray(command)
                    websocket_mask(mask, unmasked)
                    command = bytes(unmasked)
            else:
                command = buffer[start:end]
            pos = end
            replies.append(self._command(transport, command))
        self._buffer = buffer[pos:]
        if replies:
            transport.write(text_frame(b"\n".join(replies)))

    def _command(self, transport: asyncio.Transport, command: bytes) -> bytes:
        """Run one command (as little as tells it apart); its reply."""
        if b'"op":"publish"' in command:
            channel = _string_after(command, b'"channel":"')
            start = command.find(b'"data":') + 7
            push = text_frame(
                b'{"push":"pub","channel":"%s","data":%s}'
                % (channel, command[start : command.rfind(b"}")])
            )
            for subscriber in self._channels.get(channel, ()):
                subscriber.write(push)
        elif b'"op":"subscribe"' in command:
            channel = _string_after(command, b'"channel":"')
            self._channels.setdefault(channel, set()).add(transport)
            self._subscribed.append(channel)
        start = command.find(b'"id":') + 5
        return b'{"id":%s,"result":{}}' % command[start : command.find(b",", start)]

    def _handshake(self, transport: asyncio.Transport, head: bytes) -> bool:
        key = _header(head, b"sec-websocket-key")
        if not head.startswith(b"GET ") or key is None:
            transport.write(_BAD)
            transport.close()
            return False
        # RFC 6455's accept value, from the one place orbiter computes it (a SHA-1, as before).
        accept = accept_value(key.decode("latin-1")).encode()
        transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self._open = True
        return True


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
