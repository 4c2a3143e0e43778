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
- :class:`CommandLink`: a connection of its own whose replies go, in the loop's I/O
  callback, to the handler sent with each command (the publications' path: their
  publishers are answered without a loop iteration between).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, ResponseError

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


#: What a command's reply is handed to: the reply, a ResponseError in its place, or a
#: ``ConnectionError`` when the connection was lost before it came.
ReplyHandler = Callable[[Any], None]


class CommandLink(asyncio.Protocol):
    """A connection of its own whose replies are handed over as they are parsed, in the
    loop's I/O callback, each to the handler sent with its command: no task, no coroutine
    and no loop iteration between a reply and its handler.

    Made by :meth:`open` from an unconnected redis-py connection (which does the
    handshake), whose transport it then takes over. When the connection is lost (or
    :meth:`abort`), every handler still waiting gets a ``ConnectionError``.
    """

    def __init__(self) -> None:
        self._parser = hiredis.Reader(protocolError=InvalidResponse, replyError=ResponseError)
        self._waiting: deque[ReplyHandler] = deque()
        self._transport: asyncio.WriteTransport | None = None
        self._write: Callable[[bytes], None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lost: BaseException | None = None

    @classmethod
    async def open(cls, connection: AbstractConnection) -> CommandLink:
        """Connect ``connection`` (AUTH, SELECT, TLS: redis-py's handshake), then read it."""
        await connection.connect()  # type: ignore[no-untyped-call]
        writer = getattr(connection, "_writer", None)  # see ReplyStream
        if not isinstance(writer, asyncio.StreamWriter):
            raise RedisConnectionError("the redis-py connection keeps its stream elsewhere")
        link = cls()
        transport = writer.transport
        transport.set_protocol(link)
        # The transport is the link's now: the redis-py connection forgets it (or its
        # finalizer would close it whenever the connection is collected), and the link
        # holds its stream writer (whose finalizer closes it too).
        connection._reader = connection._writer = None
        link._writer = writer
        link._transport = transport
        link._write = transport.write
        return link

    @property
    def usable(self) -> bool:
        """Commands sent now may be answered (the connection was not lost)."""
        return self._lost is None and self._transport is not None

    @property
    def waiting(self) -> int:
        """Commands sent and not answered yet."""
        return len(self._waiting)

    def send(self, packed: bytes, handlers: list[ReplyHandler]) -> None:
        """Write ``packed`` commands, one handler per command, in order."""
        if self._lost is not None or self._write is None:
            error = RedisConnectionError(f"the connection to Redis was lost: {self._lost}")
            for handler in handlers:
                handler(error)
            return
        self._waiting.extend(handlers)
        self._write(packed)

    def abort(self, why: str) -> None:
        """Cut the connection now: every handler waiting gets a ``ConnectionError``."""
        if self._lost is None:
            self._lost = RedisConnectionError(why)
        if self._transport is not None:
            self._transport.abort()
        self._fail_waiting()

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        try:
            parser.feed(data)
            reply = parser.gets()
        except InvalidResponse as exc:
            self.abort(f"Redis sent what is not RESP: {exc}")
            return
        waiting = self._waiting
        while reply is not False:
            if not waiting:
                self.abort("Redis sent a reply to no command")
                return
            waiting.popleft()(reply)
            try:
                reply = parser.gets()
            except InvalidResponse as exc:
                self.abort(f"Redis sent what is not RESP: {exc}")
                return

    def eof_received(self) -> bool:
        return False  # closes the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost is None:
            self._lost = RedisConnectionError(
                f"Redis closed the connection: {exc}" if exc else "Redis closed the connection"
            )
        self._fail_waiting()

    def _fail_waiting(self) -> None:
        waiting, self._waiting = self._waiting, deque()
        error = self._lost
        for handler in waiting:
            handler(error)
