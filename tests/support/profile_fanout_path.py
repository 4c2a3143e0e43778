"""Fan-out to one channel's subscribers, in one process, with a latency-bound publisher: a
profiling aid.

Run: ``.venv/bin/python -m tests.support.profile_fanout_path [--subscribers 2000]
[--publishes 2000] [--depth 4] [--data-dir DIR] [--count]``. What ``orbiter bench fanout``
makes a server do: ``subscribers`` native WebSockets on one channel, and a
publisher that keeps ``depth`` pipelined ``POST /api/publish`` requests in
flight, sending the next ones as soon as answers are written (one loop
iteration later, standing in for the network). ``--data-dir``: the SQLite
engine on a file there, else the memory engine. It prints the subscriber
writes per publication (fewer: more publications share each write, the
batching a fast answer allows) and the CPU per delivery (the process's, the
SQLite writer thread's included). ``--count``: instead of the time, the
interpreter's work per publication on the loop's thread
(:class:`~tests.support.work_counter.WorkCounter`, bytecodes by function), the
first quarter of the publications not counted; use a few hundred publications.
The same file runs against another tree (``PYTHONPATH=TREE:/work/main python
/work/main/tests/support/profile_fanout_path.py --count``): compare only runs
that print the same writes per publication. The transports are stand-ins that
count writes: no system call. Not a test: pytest does not collect it.
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
from orbiter.http.fast_publish import FastPublishProtocol, _DateHeader
from orbiter.node import Node
from orbiter.transports.websocket import NativeWebSocket, _Endpoint
from tests.support.profile_publish_path import CountingTransport
from tests.support.standins import StandInTakeover
from tests.support.work_counter import WorkCounter

# This file also runs against an older tree: b67c848's (the tree issues 13 and 14 are
# measured against) kept config_from_dict elsewhere.
try:
    from orbiter.config.settings import config_from_dict
except ImportError:
    from orbiter.config import config_from_dict  # type: ignore[attr-defined,no-redef]


def request(seq: int) -> bytes:
    body = b'{"channel":"bench0","data":"#B%d#%s"}' % (seq, b"x" * 90)
    return (
        b"POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )


class Publisher(CountingTransport):
    """The publisher's end: each answer written lets one more request go, a loop iteration
    later (the network's round trip, at its shortest)."""

    def __init__(self, total: int) -> None:
        super().__init__()
        self.protocol: FastPublishProtocol | None = None
        self.sent = 0
        self.total = total
        self.answered = 0
        self.done = asyncio.Event()
        #: Set when ``warm_up`` publications are answered (``--count`` starts counting).
        self.warm_up = 0
        self.warmed = asyncio.Event()

    def write(self, data: bytes) -> None:
        super().write(data)
        answers = data.count(b"HTTP/1.1 200")
        self.answered += answers
        if self.answered >= self.warm_up:
            self.warmed.set()
        if self.answered >= self.total:
            self.done.set()
        more = min(answers, self.total - self.sent)
        if more > 0:
            reads = b"".join(request(self.sent + i) for i in range(more))
            self.sent += more
            assert self.protocol is not None
            asyncio.get_running_loop().call_soon(self.protocol.data_received, reads)


async def measure(
    subscribers: int, publishes: int, depth: int, data_dir: str | None, count: bool
) -> None:
    config = config_from_dict(tomllib.loads(BENCH_CONFIG.format(session="", limits="")))
    if data_dir is not None:
        config = replace(config, engine=replace(config.engine, kind="sqlite", data_dir=data_dir))
    node = Node(config)
    await node.start()
    endpoint = _Endpoint(node)
    sinks = []
    for _ in range(subscribers):
        session = node.new_session("127.0.0.1")
        transport = CountingTransport()
        NativeWebSocket(endpoint, None, session, "127.0.0.1").connection_made(transport)  # type: ignore[arg-type]
        await session.receive('{"id":1,"op":"connect"}')
        await session.receive(orjson.dumps({"id": 2, "op": "subscribe", "channel": "bench0"}))
        sinks.append(transport)
    await asyncio.sleep(0.05)
    for transport in sinks:
        transport.writes = 0
    publisher = Publisher(publishes)
    protocol = FastPublishProtocol(StandInTakeover(publisher), node, _DateHeader())  # type: ignore[arg-type]
    publisher.protocol = protocol
    protocol.connection_made(publisher)  # type: ignore[arg-type]
    counter = WorkCounter(allocations=False)
    publisher.warm_up = publishes // 4
    publisher.sent = depth
    protocol.data_received(b"".join(request(i) for i in range(depth)))
    if count:  # the first quarter warms up (caches, the channel's first publications)
        await asyncio.wait_for(publisher.warmed.wait(), 120)
        for transport in sinks:
            transport.writes = 0
        counted = publishes - publisher.answered
        counter.__enter__()
    started, cpu = time.monotonic(), time.process_time()
    await asyncio.wait_for(publisher.done.wait(), 600 if count else 120)
    await asyncio.sleep(0.05)  # the last pass
    spent, elapsed = time.process_time() - cpu, time.monotonic() - started
    writes = sum(t.writes for t in sinks)
    if count:
        counter.__exit__(None, None, None)
        print(f"{counter.per(counted)} on the loop's thread; bytecodes by function:")
        print(counter.top(counted, 40))
        print(f"{writes / counted:.0f} subscriber writes per publication ({counted} counted)")
        endpoint.wheel.close()
        await node.close()
        return
    print(
        f"{writes / publishes:.0f} subscriber writes per publication ({writes / subscribers:.0f} "
        f"each); {spent / (publishes * subscribers) * 1e6:.3f} µs of CPU per delivery; "
        f"{publishes / elapsed:.0f} publications/s"
    )
    endpoint.wheel.close()
    await node.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--publishes", type=int, default=2000)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--data-dir", help="the SQLite engine's directory (default: memory)")
    parser.add_argument("--count", action="store_true", help="count the work, not the time")
    args = parser.parse_args()
    uvloop.run(measure(args.subscribers, args.publishes, args.depth, args.data_dir, args.count))


if __name__ == "__main__":
    main()
