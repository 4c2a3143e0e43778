"""A TCP relay in front of a ``redis-server`` that reads the commands clients send, so a test
can hold or cut a connection exactly at a command's boundary (a race made deterministic).

It runs in the test's event loop. Client bytes are split into commands (RESP arrays, as
every client sends them) and forwarded one by one; the server's bytes are forwarded as
they come, its replies counted (hiredis) so the relay knows when a command was answered.

- :meth:`RedisRelay.hold_after`: the first command matching goes through; the commands
  after it on that connection wait until the test releases them (the test acts on Redis
  meanwhile, after the held command's reply came back if it waits for that).
- :meth:`RedisRelay.cut_after`: the first command matching goes through, then that
  connection is cut both ways at once, so no reply from then on reaches the client, and
  new connections are refused until :meth:`RedisRelay.restore` (as a Redis that died
  just after it read the command).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import hiredis

#: Whether a command (its words, as bytes) is the one to act after.
Matcher = Callable[[list[bytes]], bool]


def _command(buffer: bytearray) -> tuple[list[bytes], int] | None:
    """The first whole command (a RESP array of bulk strings) in ``buffer`` and its length,
    or ``None`` if it has not all arrived."""
    end = buffer.find(b"\r\n")
    if end < 0:
        return None
    if buffer[:1] != b"*":  # an inline command (redis-cli's): one line
        return bytes(buffer[:end]).split(), end + 2
    count, at, words = int(buffer[1:end]), end + 2, []
    for _ in range(count):
        end = buffer.find(b"\r\n", at)
        if end < 0:
            return None
        length = int(buffer[at + 1 : end])
        start = end + 2
        if len(buffer) < start + length + 2:
            return None
        words.append(bytes(buffer[start : start + length]))
        at = start + length + 2
    return words, at


class Hold:
    """A connection held after a command: :attr:`sent` once that command went to Redis,
    :attr:`answered` once its reply went back to the client; :meth:`release` lets the
    commands after it go."""

    def __init__(self, matches: Matcher) -> None:
        self.matches = matches
        self.sent = asyncio.Event()
        self.answered = asyncio.Event()
        self.released = asyncio.Event()

    def release(self) -> None:
        self.released.set()


class RedisRelay:
    """127.0.0.1:``port`` → the ``redis-server`` on ``target_port``."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._server: asyncio.Server | None = None
        self._holds: list[Hold] = []
        self._cuts: list[tuple[Matcher, asyncio.Event]] = []
        self._refusing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accepted, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def hold_after(self, matches: Matcher) -> Hold:
        hold = Hold(matches)
        self._holds.append(hold)
        return hold

    def cut_after(self, matches: Matcher) -> asyncio.Event:
        """Cut the connection that sends a command matching (see the module's docstring);
        the event is set once it was cut."""
        cut = asyncio.Event()
        self._cuts.append((matches, cut))
        return cut

    def restore(self) -> None:
        """Take new connections again."""
        self._refusing = False

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        #: Commands forwarded, and replies seen, on this connection.
        counts = [0, 0]
        #: The replies after which each hold of this connection was answered.
        waiting: list[tuple[int, Hold]] = []

        def cut() -> None:
            writer.transport.abort()
            up_writer.transport.abort()

        async def upward() -> None:
            buffer = bytearray()
            while data := await reader.read(65536):
                buffer += data
                while (found := _command(buffer)) is not None:
                    words, length = found
                    up_writer.write(bytes(buffer[:length]))
                    del buffer[:length]
                    counts[0] += 1
                    for matches, done in list(self._cuts):
                        if matches(words):
                            self._cuts.remove((matches, done))
                            self._refusing = True
                            await up_writer.drain()
                            cut()
                            done.set()
                            return
                    for hold in list(self._holds):
                        if hold.matches(words):
                            self._holds.remove(hold)
                            waiting.append((counts[0], hold))
                            await up_writer.drain()
                            hold.sent.set()
                            await hold.released.wait()
            up_writer.close()

        async def downward() -> None:
            parser = hiredis.Reader()
            while data := await up_reader.read(65536):
                writer.write(data)
                parser.feed(data)
                while parser.gets() is not False:
                    counts[1] += 1
                for seen, hold in list(waiting):
                    if counts[1] >= seen:
                        waiting.remove((seen, hold))
                        hold.answered.set()
            writer.close()

        tasks = [asyncio.create_task(upward()), asyncio.create_task(downward())]
        self._tasks.update(tasks)
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._tasks.difference_update(tasks)
            self._writers -= {writer, up_writer}
            cut()
