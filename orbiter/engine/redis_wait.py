"""Reading a Redis link's socket behind its transport's back: a bounded wait for an answer.

The Redis engine's ``Broker.flush`` (``engine/redis_publishing.py``'s
``Publisher.flush_now``) writes a read's pipeline and may then wait a bounded
time (``engine.commit_wait``) for Redis's answer, so that the read's
publishers are answered in the read's own loop iteration rather than once the
loop comes back to the link's socket. This module is how: :func:`reader_for`
says whether a transport's socket may be read here, and its
:class:`SocketReader` waits for it and reads it; the link hands what was read to
its own ``data_received`` (``engine/redis_wire.py``).

**Why it is sound.** Only the two transports that read a plain socket in their
own read callback are taken: asyncio's selector transport and uvloop's TCP and
Unix transports (:func:`reader_for`; a TLS transport, ``rediss://``, has data
decrypted by the transport, a proactor keeps a read posted: neither is read
here). Each of them reads in its callback with one ``recv`` and hands what it
read to the protocol in the same callback: it holds nothing read and not
handed over. The loop runs one callback at a time, so a read here, handed to
the same protocol before the wait returns, comes after every byte the transport
handed over and before every byte it reads later: the order of the stream is
kept. The transport's next read callback finds the socket drained: ``recv``
raises ``EAGAIN``, which both ignore (asyncio returns; libuv reports 0 bytes,
which uvloop ignores). Nothing is read once the transport is closing (its
socket, or the descriptor's number, may be gone or reused), and the end of the
stream or an error is never consumed: the socket is read only when ``ppoll``
says it is readable with no error or hang-up, and an end of stream (``read``
returning nothing) stays readable for the transport, which reports it. An
error that comes between the poll and the read (consumed by that read) is
returned to the link, which reports it as the transport would (the connection
lost). Nothing is written here: the link writes through its transport, and the
wait is only made once its transport's write buffer is empty (the pipeline is
in the socket, not waiting in uvloop's or asyncio's buffer for a later
iteration).

**Why ppoll.** The bound is a fraction of a millisecond (0.2 ms by default);
``select.poll``, ``epoll`` and socket timeouts round a timeout up to whole
milliseconds, and ``select.select`` refuses descriptors past 1024 (a node with
thousands of connections). ``ppoll`` takes nanoseconds; it is called through
``ctypes`` (about a microsecond), and where the C library has none, no wait is
made (:data:`PPOLL` is ``None``).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import select
import socket
import time
from asyncio import selector_events
from typing import Any

#: Seconds a publisher's flush may wait for Redis's answer by default (``engine.commit_wait``'s
#: default): a localhost or same-rack Redis answers a pipeline of a few publications within it.
DEFAULT_WAIT = 0.0002
#: Seconds without a wait after one that ran out: a Redis farther away than the bound (its
#: answers never within it) costs the loop one bound per pause, not one per iteration.
PAUSE_AFTER_TIMEOUT = 0.1

#: Bytes read at most in one read (an answer to a pipeline is usually far less; the
#: transport reads the rest, in order, if more came).
READ_SIZE = 65536

#: The transports whose socket :func:`reader_for` reads: uvloop's (by name: uvloop is
#: optional) and asyncio's selector transport.
_UVLOOP_TRANSPORTS = frozenset({"TCPTransport", "UnixTransport"})
_FAMILIES = frozenset({socket.AF_INET, socket.AF_INET6, socket.AF_UNIX})
#: What ``ppoll`` says of a socket that holds data, with no error and no hang-up.
_READABLE = select.POLLIN


class _PollFd(ctypes.Structure):
    _fields_ = (("fd", ctypes.c_int), ("events", ctypes.c_short), ("revents", ctypes.c_short))


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


def _ppoll() -> Any:
    """The C library's ``ppoll``, typed, or None where there is none."""
    try:
        function = ctypes.CDLL(None, use_errno=True).ppoll
    except (OSError, AttributeError):
        return None
    function.argtypes = (
        ctypes.POINTER(_PollFd),
        ctypes.c_ulong,
        ctypes.POINTER(_Timespec),
        ctypes.c_void_p,
    )
    function.restype = ctypes.c_int
    return function


#: ``ppoll`` (None: the platform has none, and no wait is made).
PPOLL: Any = _ppoll()


class SocketReader:
    """The socket of a link's transport, waited for and read here (see the module's
    docstring); made by :func:`reader_for`. Each has its own ``ppoll`` arguments."""

    __slots__ = ("_polled", "_polled_ref", "_timeout", "_timeout_ref", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._polled = _PollFd(fd, select.POLLIN, 0)
        self._timeout = _Timespec(0, 0)
        self._polled_ref = ctypes.byref(self._polled)
        self._timeout_ref = ctypes.byref(self._timeout)

    def wait(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for the socket to hold data to read: True when
        it does, with no error and no hang-up (those, like a timeout, are False: left to
        the transport, which reports them)."""
        limit = self._timeout
        # (ppoll sets revents, 0 on a timeout, and glibc's leaves the timeout as it was)
        if 0 <= timeout < 1:  # every wait (the bound is at most 0.01 s): seconds stay 0
            limit.tv_nsec = int(timeout * 1e9)
            ready = PPOLL(self._polled_ref, 1, self._timeout_ref, None)
        else:
            whole = max(0, int(timeout))
            limit.tv_sec, limit.tv_nsec = whole, max(0, int((timeout - whole) * 1e9))
            ready = PPOLL(self._polled_ref, 1, self._timeout_ref, None)
            limit.tv_sec = 0
        if ready != 1:
            return False  # timed out, or interrupted (EINTR): the wait is over all the same
        return bool(self._polled.revents == _READABLE)

    def read(self) -> bytes | OSError | None:
        """What the socket holds now, or None (nothing, or the end of the stream: left for
        the transport to find), or the error the read consumed (the caller reports it)."""
        try:
            data = os.read(self.fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            return exc
        return data or None


def reader_for(transport: asyncio.BaseTransport) -> SocketReader | None:
    """A reader of ``transport``'s socket when it may be read here (a plain TCP or Unix
    stream socket read by asyncio's selector transport or uvloop's), else None."""
    if PPOLL is None:
        return None
    kind = type(transport)
    if not (
        issubclass(kind, selector_events._SelectorSocketTransport)  # type: ignore[attr-defined]
        or (kind.__module__ == "uvloop.loop" and kind.__name__ in _UVLOOP_TRANSPORTS)
    ):
        return None
    if transport.get_extra_info("sslcontext") is not None:
        return None
    sock = transport.get_extra_info("socket")
    if sock is None or sock.type != socket.SOCK_STREAM or sock.family not in _FAMILIES:
        return None
    return SocketReader(sock.fileno())


class IterationWait:
    """The wait a loop iteration may spend for Redis's answers: at most one wait (of at
    most :attr:`bound` seconds) per iteration, shared by the publishers that hold this
    object (the shards of a sharded broker share one, so that their flushes never wait
    more than the bound in all, give or take the kernel's timer slack: 50 µs for a
    process of the default policy); none for :data:`PAUSE_AFTER_TIMEOUT` after a wait
    that ran out."""

    __slots__ = ("_quiet_until", "_taken", "bound")

    def __init__(self, bound: float = DEFAULT_WAIT) -> None:
        """``bound``: seconds (0: never waits)."""
        self.bound = bound
        self._taken = False
        self._quiet_until = 0.0

    def take(self, loop: asyncio.AbstractEventLoop) -> float:
        """The seconds this iteration's wait may last (0: none: the bound is 0, this
        iteration waited already, or waits are paused)."""
        if self.bound <= 0 or self._taken:
            return 0.0
        if self._quiet_until and time.monotonic() < self._quiet_until:
            return 0.0
        self._taken = True
        # (queued before what the wait's answers may queue: the next iteration's first
        # flush may wait again)
        loop.call_soon(self._next_iteration)
        return self.bound

    def _next_iteration(self) -> None:
        self._taken = False

    def ran_out(self) -> None:
        """A wait ran out with its answer not there: no wait for a while."""
        self._quiet_until = time.monotonic() + PAUSE_AFTER_TIMEOUT
