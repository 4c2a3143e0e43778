"""Python CPU per HTTP publish, in one process, without the kernel: a profiling aid.

Run: ``.venv/bin/python -m tests.support.profile_publish_path [--subscribers 2000]
[--publishes 100000] [--depth 8] [--data-dir DIR]`` (under ``py-spy record`` to see
where it goes). ``--data-dir``: the SQLite engine on a file there (its writer
thread's CPU counts too: the process's), else the memory engine.

The real publish path, as in ``orbiter bench many-channels``: a
:class:`~orbiter.http.fast_publish.FastPublishProtocol` fed ``depth``
pipelined ``POST /api/publish`` requests per read, each to another
subscriber's channel, published by the node's memory engine and written by
each subscriber's :class:`~orbiter.transports.websocket.NativeWebSocket`
after the loop iteration, as the server does. The transports are stand-ins
that count what is written, so the figure is the interpreter's share alone:
no system call, no uvloop. What the kernel and uvloop add is what the bench
measures against a real server. Not a test: pytest does not collect it.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import tomllib
from dataclasses import replace

import orjson
import uvloop

from orbiter.bench.spawn import BENCH_CONFIG
from orbiter.config.settings import config_from_dict
from orbiter.http.fast_publish import FastPublishProtocol, _DateHeader
from orbiter.node import Node
from orbiter.transports.websocket import NativeWebSocket, _Endpoint
from tests.support.standins import StandInTakeover, StandInTransport


class CountingTransport(StandInTransport):
    """Writes are counted, never kept."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        #: Set at each write (the publisher's answers, for an engine that commits).
        self.written = asyncio.Event()

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.written.set()


def requests(subscribers: int, publishes: int, depth: int) -> list[bytes]:
    """The reads: ``depth`` requests each, as the load generator sends them."""
    stamp = int(time.time() * 1e6)
    reads = []
    for first in range(0, publishes, depth):
        parts = []
        for seq in range(first, min(first + depth, publishes)):
            body = b'{"channel":"bench%d","data":"#B%d.%d#%s"}' % (
                seq % subscribers,
                seq,
                stamp,
                b"x" * 70,
            )
            parts.append(
                b"POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body)
            )
        reads.append(b"".join(parts))
    return reads


async def measure(subscribers: int, publishes: int, depth: int, data_dir: str | None) -> None:
    config = config_from_dict(
        tomllib.loads(BENCH_CONFIG.format(session="[session]\nwrite_delay = 0.005\n", limits=""))
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
    protocol = FastPublishProtocol(StandInTakeover(publisher), node, _DateHeader())  # type: ignore[arg-type]
    protocol.connection_made(publisher)  # type: ignore[arg-type]
    reads = requests(subscribers, publishes, depth)
    started = time.process_time()
    for data in reads:
        protocol.data_received(data)
        await asyncio.sleep(0)  # the loop iteration's end: the fan-out's flush
        if protocol._busy:  # an engine that commits: until the answers are written
            publisher.written.clear()
            await publisher.written.wait()
    spent = time.process_time() - started
    written = sum(t.writes for t in sinks)
    print(
        f"{spent / publishes * 1e6:.2f} µs of CPU per publish; {written} subscriber writes, "
        f"{publisher.writes} answer writes"
    )
    endpoint.wheel.close()
    await node.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--publishes", type=int, default=100_000)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--data-dir", help="the SQLite engine's directory (default: memory)")
    args = parser.parse_args()
    uvloop.run(measure(args.subscribers, args.publishes, args.depth, args.data_dir))


if __name__ == "__main__":
    main()
