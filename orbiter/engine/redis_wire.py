"""Redis connections read in bulk: the Redis engine's hot paths without redis-py's
per-command machinery.

redis-py makes each connection (the URL's host or Unix socket, TLS, ``AUTH``,
``SELECT``) and keeps doing so for everything else; on the two paths taken
per publication this module uses the connection's stream itself. Commands are
packed (by hiredis, or the publish path's own framing: ``engine/redis_publishing.py``)
and go out in one write; replies and messages are parsed by a hiredis
reader from whatever one read brought, as many as arrived, with no coroutine,
timeout context, pool checkout or response callback per reply (redis-py's
pipeline and ``read_response`` cost several times the rest of a publish:
``docs/benchmarks.md``, "Issue 16"). A reply error (a script that failed,
``NOSCRIPT``) is a :class:`~redis.exceptions.ResponseError` in its place,
never raised, so the answers of a pipeline stay one per command, in order.

- :class:`PubSubLink`: a pub/sub connection's messages, each handed to its handler
  in the loop's I/O callback that read it (reading paused while a catch-up is awaited).
- :class:`CommandLink`: a connection of its own whose replies go, in the loop's I/O
  callback, to the handler sent with each command (the publications' path: their
  publishers are answered without a loop iteration between).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, cast

import hiredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, RedisError, ResponseError

from orbiter.engine.redis_wait import SocketReader, reader_for
from orbiter.tasks import stop

log = logging.getLogger("orbiter.engine.redis")

pack_command: Callable[[tuple[Any, ...]], bytes] = hiredis.pack_command


#: What a pub/sub message is handed to: ``None`` once handled, or what must be awaited
#: before the next message is handled (a catch-up from history).
MessageHandler = Callable[[Any], Awaitable[None] | None]


def send_on(connection: AbstractConnection, *words: bytes | str) -> None:
    """Send a command on a pub/sub connection a :class:`PubSubLink` reads: written to its
    transport at once; a ``ConnectionError`` if the connection is cut or closing.

    Not through redis-py's ``send_command``: on a connection cut meanwhile (its ping
    failing, say) redis-py drops its streams, so a command sent after that fails with an
    ``AttributeError`` midway or connects a new socket that nobody reads.
    """
    writer = getattr(connection, "_writer", None)  # (see PubSubLink.take_over)
    if not isinstance(writer, asyncio.StreamWriter) or writer.transport.is_closing():
        raise RedisConnectionError("the pub/sub connection to Redis is closed")
    writer.transport.write(hiredis.pack_command(cast(Any, words)))


class PubSubLink(asyncio.Protocol):
    """The messages of one connected redis-py pub/sub connection, each handled as it is
    parsed, in the loop's I/O callback that read it: no stream buffer, task wake-up or
    loop iteration between the socket and the handler.

    Made by :meth:`take_over`, which makes it the transport's protocol; the redis-py
    connection keeps writing (``send_command``: ``SUBSCRIBE``, ``PING``) through its
    stream writer, whose protocol still hears of flow control and of the connection's
    loss (forwarded), and its ``read_response`` must not be called any more. A message
    whose handling must be awaited (a catch-up) pauses reading: the messages after it
    wait, in order, until it is done. :attr:`done` fails with the reason the link ended:
    the connection lost or cut, a reply that is not RESP, or a ``RedisError`` (or
    ``OSError``) raised by a handler; any other exception of a handler is logged and the
    next message handled.
    """

    def __init__(self, take: MessageHandler, refused: Callable[[ResponseError], None]) -> None:
        """``take``: each message; ``refused``: each error reply (a command refused)."""
        self._take = take
        self._refused = refused
        self._parser = hiredis.Reader(protocolError=InvalidResponse, replyError=ResponseError)
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        #: The stream writer's protocol, told of flow control and of the connection's loss.
        self._streams: asyncio.BaseProtocol | None = None
        #: The handling awaited (a catch-up), while reading is paused for it.
        self._waiting: asyncio.Task[None] | None = None
        #: Fails with the reason the link ended (it never succeeds).
        self.done: asyncio.Future[None] = self._loop.create_future()
        #: The loop's time of the last read.
        self.read_at = self._loop.time()

    @classmethod
    def take_over(
        cls,
        connection: AbstractConnection,
        take: MessageHandler,
        refused: Callable[[ResponseError], None],
    ) -> PubSubLink:
        """Read ``connection`` (connected, its commands sent) from now on; what its stream
        had buffered is handled first."""
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
        # A read-write transport (asyncio's or uvloop's, which is no asyncio.Transport
        # subclass): the stream writer's type says only that it writes.
        transport = cast(asyncio.Transport, writer.transport)
        link = cls(take, refused)
        link._streams = transport.get_protocol()
        link._transport = transport
        transport.set_protocol(link)
        buffered = getattr(reader, "_buffer", None)  # read, and not parsed by redis-py yet
        if isinstance(buffered, bytearray) and buffered:
            link._parser.feed(bytes(buffered))
            buffered.clear()
            link._handle()
        return link

    def abort(self, why: str) -> None:
        """Cut the connection now: :attr:`done` fails with a ``ConnectionError`` saying why."""
        self._fail(RedisConnectionError(why))

    async def stopped(self) -> None:
        """Once the link ended: stop the handling awaited, if any (it is done again, from
        history, by the next connection's catch-up)."""
        await stop(self._waiting)

    def data_received(self, data: bytes) -> None:
        self.read_at = self._loop.time()
        self._parser.feed(data)
        if self._waiting is None:
            self._handle()

    def _handle(self) -> None:
        """Handle the messages parsed, in order, until one must be awaited."""
        gets = self._parser.gets
        take = self._take
        while not self.done.done():
            try:
                message = gets()
            except InvalidResponse as not_resp:
                self._fail(not_resp)
                return
            if message is False:
                return
            try:
                if isinstance(message, ResponseError):
                    self._refused(message)
                    continue
                later = take(message)
            except (RedisError, OSError) as exc:
                self._fail(exc)
                return
            except Exception:  # a message this node cannot read: delivery goes on
                log.exception("could not handle a message from Redis: %.200r", message)
                continue
            if later is not None:
                transport = self._transport
                if transport is not None and not transport.is_closing():
                    transport.pause_reading()
                self._waiting = self._loop.create_task(self._after(later))
                return

    async def _after(self, later: Awaitable[None]) -> None:
        """Await ``later``, then go on with the messages after it."""
        try:
            await later
        except (RedisError, OSError) as exc:
            self._fail(exc)
            return
        except Exception:
            log.exception("could not handle a message from Redis (a catch-up)")
        self._waiting = None
        transport = self._transport
        if self.done.done() or transport is None or transport.is_closing():
            return
        transport.resume_reading()
        self._handle()

    def _fail(self, exc: BaseException) -> None:
        done = self.done
        if not done.done():
            done.set_exception(exc)
            done.exception()  # (retrieved: whoever awaits it gets it all the same)
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.abort()

    def pause_writing(self) -> None:
        if self._streams is not None:
            self._streams.pause_writing()

    def resume_writing(self) -> None:
        if self._streams is not None:
            self._streams.resume_writing()

    def eof_received(self) -> bool:
        return False  # closes the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        why = f"Redis closed the connection: {exc}" if exc else "Redis closed the connection"
        self._fail(RedisConnectionError(why))
        streams, self._streams = self._streams, None
        if streams is not None:
            streams.connection_lost(exc)


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

    :meth:`read_now` waits a bounded time for the replies and hands them over at once,
    rather than when the loop comes back to the socket (``Broker.flush``'s wait: the
    read's publishers answered in its own iteration); a TLS connection's is never
    read so (``engine/redis_wait.py``).
    """

    def __init__(self) -> None:
        self._parser = hiredis.Reader(protocolError=InvalidResponse, replyError=ResponseError)
        self._waiting: deque[ReplyHandler] = deque()
        self._transport: asyncio.WriteTransport | None = None
        self._write: Callable[[bytes], None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lost: BaseException | None = None
        #: The transport's socket, when it may be read behind it (:meth:`read_now`).
        self._reader: SocketReader | None = None

    @classmethod
    async def open(cls, connection: AbstractConnection) -> CommandLink:
        """Connect ``connection`` (AUTH, SELECT, TLS: redis-py's handshake), then read it."""
        await connection.connect()  # type: ignore[no-untyped-call]
        writer = getattr(connection, "_writer", None)  # see PubSubLink
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
        link._reader = reader_for(transport)
        return link

    @property
    def usable(self) -> bool:
        """Commands sent now may be answered (the connection was not lost)."""
        return self._lost is None and self._transport is not None

    @property
    def waiting(self) -> int:
        """Commands sent and not answered yet."""
        return len(self._waiting)

    @property
    def waitable(self) -> bool:
        """:meth:`read_now` may read the replies: the socket is a plain one, the connection
        is not lost or closing, and what was sent is all in the socket (none of it left
        in the transport's buffer for a later iteration)."""
        transport = self._transport
        return (
            self._reader is not None
            and self._lost is None
            and transport is not None
            and not transport.is_closing()
            and not transport.get_write_buffer_size()
        )

    def read_now(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for replies, and hand what came to their
        handlers now, in order, before the transport reads what follows
        (``engine/redis_wait.py`` says why that is sound). False when nothing was read:
        the wait ran out, or the socket holds the end of the stream or an error, left to
        the transport to report (as it does when the wait is not made); an error the
        read itself consumed is reported here, as the transport would (the connection
        lost: every handler waiting gets a ``ConnectionError``)."""
        reader = self._reader
        transport = self._transport
        if reader is None or self._lost is not None or transport is None:
            return False
        if transport.is_closing() or not reader.wait(timeout):
            return False  # (a closing transport's descriptor may be gone, or reused)
        got = reader.read()
        if got is None:
            return False
        if isinstance(got, OSError):
            self.abort(f"Redis closed the connection: {got}")
            return True
        try:
            self.data_received(got)
        except Exception as exc:  # as the transport does: the connection ends, said why
            log.error("handling Redis's replies failed", exc_info=True)
            self.abort(f"handling Redis's replies failed: {exc!r}")
        return True

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
