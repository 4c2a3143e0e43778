"""Python CPU per native ``publish`` command, in one process, without the kernel: a profiling aid.

Run: ``.venv/bin/python -m tests.support.profile_native_publish [--subscribers 2000]
[--publishes 100000] [--depth 64] [--data-dir DIR] [--count]``; the options mean what
they mean in :mod:`tests.support.profile_publish_path` (the HTTP route's harness, which
this one mirrors so that the two routes compare in one build). The same file runs
against another tree (``cd TREE && python /work/main/tests/support/profile_native_publish.py``).

The real path, as in ``orbiter bench many-channels-native``: a publisher's
:class:`~orbiter.transports.websocket.NativeWebSocket` fed reads of ``depth``
masked text frames, each one ``{"id":N,"op":"publish",...}`` command to another
subscriber's channel (the load generator's frames), published by the node's
engine and written by each subscriber's :class:`NativeWebSocket` after the
loop iteration. The transports are stand-ins that count what is written, so
the figure is the interpreter's share alone. The publisher's writes are
printed beside the reads: the replies to one read should be one write. Not a
test: pytest does not collect it.
"""

from __future__ import annotations

import asyncio
import struct
import sys
import time
import tomllib
from dataclasses import replace
from pathlib import Path

import orjson

from orbiter.bench.spawn import BENCH_CONFIG
from orbiter.config.settings import config_from_dict
from orbiter.node import Node
from orbiter.transports.websocket import NativeWebSocket, _Endpoint
from tests.support.profile_publish_path import run_harness

try:
    from tests.support.profile_publish_path import CountingTransport
    from tests.support.work_counter import WorkCounter
except ImportError:  # run as a file against another tree: its neighbours
    sys.path.insert(0, str(Path(__file__).parent))
    from profile_publish_path import CountingTransport  # type: ignore[import-not-found,no-redef]
    from work_counter import WorkCounter  # type: ignore[import-not-found,no-redef]

#: An all-zero masking key: the frame's payload is its text as it is, so that the harness
#: spends nothing masking (cachegrind counts the harness too), while the server unmasks it
#: as it unmasks any (the cost does not depend on the key).
_MASK = b"\x00\x00\x00\x00"


def client_frame(payload: bytes) -> bytes:
    """A masked text frame, as a client sends it (with the key :data:`_MASK`)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x81, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
    return head + _MASK + payload


def reads(subscribers: int, publishes: int, depth: int) -> list[bytes]:
    """The reads: ``depth`` frames of one ``publish`` each, as the load generator sends them."""
    stamp = int(time.time() * 1e6)
    out = []
    for first in range(0, publishes, depth):
        frames = []
        for seq in range(first, min(first + depth, publishes)):
            command = b'{"id":%d,"op":"publish","channel":"bench%d","data":"#B%d.%d#%s"}' % (
                seq + 1000,
                seq % subscribers,
                seq,
                stamp,
                b"x" * 70,
            )
            frames.append(client_frame(command))
        out.append(b"".join(frames))
    return out


async def settle(socket: NativeWebSocket) -> None:
    """Until the read's commands ran and their replies were handed to the transport."""
    session = socket._session
    assert session is not None
    for _ in range(1_000_000):  # bounded
        await asyncio.sleep(0)  # (the flusher's hand-over, the fan-out's flush)
        if session._unkept:
            await session._all_kept()
            continue
        if socket._receiving is None and not session.outbox.queued_bytes:
            return
    raise RuntimeError("the publisher's read never finished")


async def measure(
    subscribers: int, publishes: int, depth: int, data_dir: str | None, count: bool
) -> None:
    config = config_from_dict(
        tomllib.loads(
            BENCH_CONFIG.format(
                session="[session]\nwrite_delay = 0.005\n", limits="frame_rate = 1000000000\n"
            )
        )
    )
    if data_dir is not None:
        config = replace(config, engine=replace(config.engine, kind="sqlite", data_dir=data_dir))
    node = Node(config)
    await node.start()
    endpoint = _Endpoint(node)
    sinks = []
    for index in range(subscribers):
        session = node.new_session("127.0.0.1")
        transport = CountingTransport()
        NativeWebSocket(endpoint, None, session, "127.0.0.1").connection_made(transport)  # type: ignore[arg-type]
        await session.receive('{"id":1,"op":"connect"}')
        subscribe = {"id": 2, "op": "subscribe", "channel": f"bench{index}"}
        await session.receive(orjson.dumps(subscribe).decode())
        sinks.append(transport)
    await asyncio.sleep(0.05)
    for transport in sinks:
        transport.writes = 0
    publisher = CountingTransport()
    socket = NativeWebSocket(endpoint, None, node.new_session("127.0.0.1"), "127.0.0.1")
    socket.connection_made(publisher)  # type: ignore[arg-type]
    socket.data_received(client_frame(b'{"id":1,"op":"connect"}'))
    await settle(socket)
    all_reads = reads(subscribers, publishes, depth)
    cut = len(all_reads) // 4 if count else 0
    warm_up, timed = all_reads[:cut], all_reads[cut:]
    for data in warm_up:  # (with --count) the channels' first publications are not counted
        socket.data_received(data)
        await settle(socket)
    publisher.writes = 0
    counter = WorkCounter(allocations=False)
    if count:
        counter.__enter__()
    started = time.process_time()
    for data in timed:
        socket.data_received(data)
        await settle(socket)
    spent = time.process_time() - started
    counted = min(publishes, len(all_reads) * depth) - len(warm_up) * depth
    if count:
        counter.__exit__(None, None, None)
        print(f"{counter.per(counted)} on the loop's thread; bytecodes by function:")
        print(counter.top(counted))
    written = sum(t.writes for t in sinks)
    print(
        f"{spent / counted * 1e6:.2f} µs of CPU per publish; {written} subscriber writes, "
        f"{publisher.writes} reply writes for {len(timed)} reads"
    )
    endpoint.wheel.close()
    await node.close()


def main() -> None:
    run_harness(measure, __doc__ or "", depth=64)


if __name__ == "__main__":
    main()
