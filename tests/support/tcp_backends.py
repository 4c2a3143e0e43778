"""Real TCP backends for the proxy tests: echo, close-after-greeting, and a backend that stalls."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Self


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def tcp_sockets(pid: int) -> int:
    """Open TCP sockets of ``pid`` (anything under /proc/pid/fd that is a socket)."""
    count = 0
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                count += 1
    return count


def wait_for_sockets(pid: int, expected: int, timeout: float = 10.0) -> int:
    """Wait (bounded) until ``pid`` has at most ``expected`` sockets; return the count."""
    deadline = time.monotonic() + timeout
    count = tcp_sockets(pid)
    while count > expected and time.monotonic() < deadline:
        time.sleep(0.05)
        count = tcp_sockets(pid)
    return count


class Backend:
    """An asyncio TCP server on a given port, recording what it received."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received = bytearray()
        self.connections = 0
        self.closed = asyncio.Event()
        #: Set to let a stalled backend start reading.
        self.go = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        try:
            await self.serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.closed.set()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class Echo(Backend):
    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            self.received += data
            writer.write(data)
            await writer.drain()


class Greeter(Backend):
    """Sends a greeting and closes at once: the backend that ends the connection."""

    greeting = b"hello and goodbye\r\n"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(self.greeting)
        await writer.drain()


class Stalled(Backend):
    """Reads nothing until ``go`` is set, then reads everything (a slow backend)."""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.go.wait()
        while data := await reader.read(65536):
            self.received += data


class Firehose(Backend):
    """Writes ``total`` bytes as fast as the connection takes them; counts what got out."""

    total = 64 * 1024 * 1024

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.written = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        chunk = b"x" * 65536
        while self.written < self.total:
            writer.write(chunk)
            await writer.drain()
            self.written += len(chunk)
