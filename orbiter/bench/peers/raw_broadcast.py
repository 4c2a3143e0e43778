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

``--batch STEP`` (``uvloop-raw-batch``, ``uvloop-raw-batch-256``) is the floor
of a server that writes as orbiter does under a publication rate
(``fanout-rate``): each publication is queued on its channel, and passes,
back to back (a step per loop iteration at most), write each subscriber one
frame holding everything queued for it (the payloads joined by ``\\n``; the
load generator finds every marker in a frame). ``STEP`` 0: a pass writes
every subscriber at once; else ``STEP`` subscribers per loop iteration, and
publications read between steps join the frames of the subscribers not
reached yet (orbiter's ``PubSub._step``). At ``SIGTERM`` it prints the time
its steps took per subscriber write (the cost of one subscriber write) to
stderr, and appends it to the file ``$ORBITER_FLOOR_STATS`` names, if set.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import sys
import time
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

    def __init__(
        self, channels: dict[bytes, set[asyncio.Transport]], passes: Passes | None = None
    ) -> None:
        self._channels = channels
        self._passes = passes
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
        passes = self._passes
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
            if passes is None:
                frame = text_frame(buffer[end + 4 : body_end])
                for subscriber in self._channels.get(_channel(head), ()):
                    subscriber.write(frame)
            else:
                passes.publish(_channel(head), buffer[end + 4 : body_end])
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


class _Queue:
    """A channel's publications not yet written to every subscriber, and the pass under way."""

    __slots__ = (
        "base",
        "cursor",
        "frames",
        "frames_head",
        "given",
        "pass_head",
        "pass_started",
        "pubs",
        "scheduled",
        "snapshot",
    )

    def __init__(self) -> None:
        #: ``pubs[i]`` is the channel's publication number ``base + i + 1``.
        self.pubs: list[bytes] = []
        self.base = 0
        self.scheduled = False
        #: The pass under way: its subscribers, how far it is, the newest publication's
        #: number when it started; what each subscriber has been given (while passes
        #: take several steps); the frames so far by what their subscribers had.
        self.snapshot: list[asyncio.Transport] | None = None
        self.cursor = 0
        self.pass_head = 0
        self.pass_started = 0.0
        self.given: dict[asyncio.Transport, int] | None = None
        self.frames: dict[int, bytes] = {}
        self.frames_head = 0


class Passes:
    """Publications queued per channel, written to its subscribers in passes (``--batch``)."""

    def __init__(self, channels: dict[bytes, set[asyncio.Transport]], step: int) -> None:
        self._channels = channels
        #: Subscribers per step (per loop iteration); 0: the whole pass in one step.
        self._step_size = step or sys.maxsize
        self._queues: dict[bytes, _Queue] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.steps = 0
        self.writes = 0
        self.pubs_written = 0
        self.seconds = 0.0
        self.slowest = 0.0
        #: Each pass's wall time, first step to last (reads between steps included).
        self.passes: list[float] = []

    def publish(self, channel: bytes, payload: bytes) -> None:
        queue = self._queues.get(channel)
        if queue is None:
            queue = self._queues[channel] = _Queue()
        queue.pubs.append(payload)
        if not queue.scheduled:
            queue.scheduled = True
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._loop.call_soon(self._run, channel, queue)

    def _run(self, channel: bytes, queue: _Queue) -> None:
        started = time.perf_counter()
        if queue.snapshot is None:  # a pass begins
            queue.pass_started = started
        more = self._step(queue, self._channels.get(channel, set()))
        ended = time.perf_counter()
        took = ended - started
        self.steps += 1
        self.seconds += took
        self.slowest = max(self.slowest, took)
        if queue.snapshot is None:  # the pass is over
            self.passes.append(ended - queue.pass_started)
        if more:
            assert self._loop is not None
            self._loop.call_soon(self._run, channel, queue)
        else:
            queue.scheduled = False

    def _step(self, queue: _Queue, subscribers: set[asyncio.Transport]) -> bool:
        """Write the next step's subscribers what they have not had; whether more is due."""
        pubs = queue.pubs
        if not pubs or not subscribers:
            queue.base += len(pubs)
            queue.pubs, queue.snapshot, queue.given = [], None, None
            return False
        if queue.given is None and len(subscribers) <= self._step_size:  # all in one go
            frame = text_frame(b"\n".join(pubs))
            for subscriber in subscribers:
                subscriber.write(frame)
            self.writes += len(subscribers)
            self.pubs_written += len(subscribers) * len(pubs)
            queue.base += len(pubs)
            queue.pubs = []
            return False
        head = queue.base + len(pubs)
        if queue.snapshot is None:
            queue.snapshot, queue.cursor, queue.pass_head = list(subscribers), 0, head
            if queue.given is None:
                queue.given = {}
        snapshot, given, base, frames = queue.snapshot, queue.given, queue.base, queue.frames
        assert given is not None
        end = min(len(snapshot), queue.cursor + self._step_size)
        if queue.frames_head != head:  # publications came since: the frames run further
            frames.clear()
            queue.frames_head = head
        for subscriber in snapshot[queue.cursor : end]:
            have = given.get(subscriber, base)
            if have >= head or subscriber not in subscribers:
                continue
            shared = frames.get(have)
            if shared is None:
                shared = frames[have] = text_frame(b"\n".join(pubs[have - base :]))
            subscriber.write(shared)
            self.writes += 1
            self.pubs_written += head - have
            given[subscriber] = head
        queue.cursor = end
        if end < len(snapshot):
            return True
        # The pass is over: everyone has what there was when it started.
        queue.snapshot = None
        frames.clear()
        del pubs[: queue.pass_head - base]
        queue.base = queue.pass_head
        if pubs:
            return True
        queue.given = None
        return False

    def report(self) -> str:
        per_write = self.seconds / self.writes * 1e6 if self.writes else 0.0
        per_pub = self.pubs_written / self.writes if self.writes else 0.0
        return (
            f"passes step={self._step_size if self._step_size != sys.maxsize else 0}: "
            f"{self.steps} steps, {self.writes} subscriber writes ({per_pub:.2f} publications "
            f"each) in {self.seconds:.3f} s: {per_write:.2f} us per subscriber write; "
            f"slowest step {self.slowest * 1e3:.2f} ms; {len(self.passes)} passes, "
            f"wall ms p50 {self._pass_ms(0.5):.2f} p99 {self._pass_ms(0.99):.2f} "
            f"max {self._pass_ms(1.0):.2f}\n"
        )

    def _pass_ms(self, fraction: float) -> float:
        """The passes' wall time at ``fraction`` of them (nearest rank), in milliseconds."""
        if not self.passes:
            return 0.0
        ordered = sorted(self.passes)
        return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] * 1e3


async def serve(port: int, step: int | None = None) -> Passes | None:
    """Serve on ``port``; ``step``: queue publications and write them in passes (``--batch``),
    until ``SIGTERM``, then return the passes (what they cost)."""
    channels: dict[bytes, set[asyncio.Transport]] = {}
    loop = asyncio.get_running_loop()
    passes = None if step is None else Passes(channels, step)
    server = await loop.create_server(
        lambda: Connection(channels, passes), "127.0.0.1", port, backlog=4096
    )
    async with server:
        if passes is None:
            await server.serve_forever()
        else:
            stopped: asyncio.Future[None] = loop.create_future()
            loop.add_signal_handler(signal.SIGTERM, stopped.set_result, None)
            await stopped
    return passes


def main() -> None:
    args = sys.argv[1:]
    step = None
    if len(args) == 3 and args[1] == "--batch":
        step = int(args[2])
    elif len(args) != 1:
        sys.exit("usage: python -m orbiter.bench.peers.raw_broadcast PORT [--batch STEP]")
    passes = uvloop.run(serve(int(args[0]), step))
    if passes is not None:
        text = passes.report()
        sys.stderr.write(text)
        path = os.environ.get("ORBITER_FLOOR_STATS")
        if path:
            with open(path, "a") as out:
                out.write(text)


if __name__ == "__main__":
    main()
