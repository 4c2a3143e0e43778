"""Redis connections read in bulk: the Redis engine's hot paths without redis-py's
per-command machinery.

redis-py makes each connection (the URL's host or Unix socket, TLS, ``AUTH``,
``SELECT``) and keeps doing so for everything else; on the two paths taken
per publication this module uses the connection's stream itself. Commands are
packed by hiredis and go out in one write; replies are parsed by a hiredis
reader from whatever one read brought, as many as arrived, with no coroutine,
timeout context, pool checkout or response callback per reply (redis-py's
pipeline and ``read_response`` cost several times the rest of a publish:
``docs/benchmarks.md``, "Issue 16"). A reply error (a script that failed,
``NOSCRIPT``) is a :class:`~redis.exceptions.ResponseError` in its place,
never raised, so the answers of a pipeline stay one per command, in order.

- :class:`ReplyStream`: one connected redis-py connection's replies, parsed in
  bulk (the pub/sub connection reads its messages through it).
- :class:`CommandPipe`: one connection of its own that runs packed pipelines, one
  at a time, and is dropped (and made again by the next run) on any failure, so a
  reply is never taken for another command's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import hiredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: Bytes asked of the socket per read.
READ_SIZE = 65536
#: Bytes waiting in the write buffer past which a sender waits for it to drain.
WRITE_HIGH = 1 << 20

pack_command: Callable[[tuple[Any, ...]], bytes] = hiredis.pack_command


class ReplyStream:
    """The replies (and pushed pub/sub messages) of one connected redis-py connection.

    Once made, it alone reads the connection: redis-py's own ``read_response``
    must not be called on it any more (what it had buffered is lost to it).
    """

    __slots__ = ("_loop", "_parser", "_reader", "_writer", "read_at")

    def __init__(self, connection: AbstractConnection) -> None:
        # redis-py (pinned in pyproject.toml) keeps a connected connection's asyncio
        # streams in these attributes; no public way hands them over.
        reader = getattr(connection, "_reader", None)
        writer = getattr(connection, "_writer", None)
        if not isinstance(reader, asyncio.StreamReader) or not isinstance(
            writer, asyncio.StreamWriter
        ):
            raise RedisConnectionError(
                "the redis-py connection is not connected, or keeps its streams elsewhere "
                "(a redis-py version other than pyproject.toml's)"
            )
        self._reader = reader
        self._writer = writer
        self._parser = hiredis.Reader(protocolError=InvalidResponse, replyError=ResponseError)
        self._loop = asyncio.get_running_loop()
        #: The loop's time of the last read that brought bytes.
        self.read_at = self._loop.time()

    def send(self, data: bytes) -> None:
        """Write packed commands (see :data:`pack_command`)."""
        self._writer.write(data)

    async def drain(self) -> None:
        """Wait while more than :data:`WRITE_HIGH` bytes are not written yet."""
        if self._writer.transport.get_write_buffer_size() > WRITE_HIGH:
            await self._writer.drain()

    def abort(self) -> None:
        """Cut the connection now: a read under way ends with a ``ConnectionError``."""
        self._writer.transport.abort()

    async def _fill(self) -> None:
        data = await self._reader.read(READ_SIZE)
        if not data:
            raise RedisConnectionError("Redis closed the connection")
        self.read_at = self._loop.time()
        self._parser.feed(data)

    async def read(self) -> list[Any]:
        """Every reply that has arrived, at least one (waiting for the first)."""
        gets = self._parser.gets
        replies = []
        while True:
            reply = gets()
            while reply is not False:
                replies.append(reply)
                reply = gets()
            if replies:
                return replies
            await self._fill()

    async def replies(self, count: int) -> list[Any]:
        """The next ``count`` replies, in order."""
        gets = self._parser.gets
        replies: list[Any] = []
        while True:
            while len(replies) < count:
                reply = gets()
                if reply is False:
                    break
                replies.append(reply)
            else:
                return replies
            await self._fill()


class CommandPipe:
    """A connection of its own (made by ``connect``, an unconnected redis-py connection) that
    runs one pipeline at a time: packed commands out in one write, their replies back in
    order, within ``timeout`` seconds.

    Any failure (the connection lost, no answer in time, cancellation) drops the connection
    and is raised: what Redis did with the commands is unknown, and the next run makes a new
    connection rather than read a reply meant for them.
    """

    def __init__(self, connect: Callable[[], AbstractConnection], timeout: float) -> None:
        self._connect = connect
        self._timeout = timeout
        self._connection: AbstractConnection | None = None
        self._stream: ReplyStream | None = None

    async def run(self, packed: bytes, count: int) -> list[Any]:
        """Send ``packed`` (``count`` commands) and return their ``count`` replies."""
        try:
            async with asyncio.timeout(self._timeout):
                stream = self._stream
                if stream is None:
                    stream = await self._open()
                stream.send(packed)
                await stream.drain()
                return await stream.replies(count)
        except TimeoutError:
            await self.drop()
            raise RedisTimeoutError(f"Redis did not answer within {self._timeout:g} s") from None
        except BaseException:
            await self.drop()
            raise

    async def _open(self) -> ReplyStream:
        connection = self._connect()
        self._connection = connection
        await connection.connect()  # type: ignore[no-untyped-call]
        self._stream = ReplyStream(connection)
        return self._stream

    async def drop(self) -> None:
        """Close the connection (the next run makes another)."""
        connection, self._connection, self._stream = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.disconnect()
