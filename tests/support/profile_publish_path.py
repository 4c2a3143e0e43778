"""Python CPU per HTTP publish, in one process, without the kernel: a profiling aid.

Run: ``.venv/bin/python -m tests.support.profile_publish_path [--subscribers 2000]
[--publishes 100000] [--depth 8] [--data-dir DIR] [--count]`` (under ``py-spy record``
to see where it goes). ``--data-dir``: the SQLite engine on a file there (its writer
thread's CPU counts too: the process's), else the memory engine. ``--count``: instead
of the time, the interpreter's work per publish on the loop's thread (calls, bytecodes:
:class:`~tests.support.work_counter.WorkCounter`), which does not vary with the
machine's load; use a few thousand publishes. The time is also given per thread (the
loop's, the SQLite writer's: ``/proc/self/task/*/schedstat``, Linux) with its context
switches (waits + preemptions), so the writer's share of a commit can be told from the
loop's; run it under ``taskset -c 0`` to see it as ``orbiter bench`` (which pins the
server to one core) does. The same file runs against another
tree (``cd TREE && PYTHONPATH=TREE python /work/main/tests/support/profile_publish_path.py``)
to compare two trees with one harness.

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
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import uvloop

from orbiter.bench.spawn import BENCH_CONFIG
from orbiter.http.fast_publish import FastPublishProtocol, _DateHeader
from orbiter.node import Node
from orbiter.transports.websocket import NativeWebSocket, _Endpoint

# This file also runs against an older tree (see the docstring), whose modules
# were elsewhere: b67c848's, the tree issues 13 and 14 are measured against.
try:
    from orbiter.config.settings import config_from_dict
except ImportError:
    from orbiter.config import config_from_dict  # type: ignore[attr-defined,no-redef]
try:
    from tests.support.standins import StandInTakeover
except ImportError:
    from tests.http.standins import StandInTakeover  # type: ignore[import-not-found,no-redef]
try:
    from tests.support.work_counter import WorkCounter
except ImportError:  # this file's neighbour, in whatever tree it runs
    sys.path.insert(0, str(Path(__file__).parent))
    from work_counter import WorkCounter  # type: ignore[import-not-found,no-redef]


def thread_times() -> dict[str, tuple[int, int, int]]:
    """Per thread of this process, by name: CPU nanoseconds run so far, and context
    switches given up (waiting) and taken away (preempted) (Linux's
    ``/proc/self/task/*/schedstat`` and ``status``; empty elsewhere)."""
    names = {thread.native_id: thread.name for thread in threading.enumerate()}
    times: dict[str, tuple[int, int, int]] = {}
    for task in Path("/proc/self/task").glob("*"):
        try:
            name = names.get(int(task.name), f"thread {task.name}")
            ran = int((task / "schedstat").read_text().split()[0])
            status = dict(line.split(":", 1) for line in (task / "status").read_text().splitlines())
            waited = int(status["voluntary_ctxt_switches"])
            preempted = int(status["nonvoluntary_ctxt_switches"])
        except (OSError, ValueError, IndexError, KeyError):
            continue
        had = times.get(name, (0, 0, 0))
        times[name] = (had[0] + ran, had[1] + waited, had[2] + preempted)
    return times


def thread_report(
    before: dict[str, tuple[int, int, int]], after: dict[str, tuple[int, int, int]], count: int
) -> str:
    """Each thread's CPU µs and context switches (waits + preemptions) per operation
    between two :func:`thread_times`."""
    spent = {
        name: tuple(now - then for now, then in zip(ran, before.get(name, (0, 0, 0)), strict=True))
        for name, ran in after.items()
    }
    return ", ".join(
        f"{name} {ran / count / 1e3:.2f} µs, {waited / count:.2f}+{preempted / count:.2f} switches"
        for name, (ran, waited, preempted) in sorted(spent.items(), key=lambda item: -item[1][0])
        if ran > 0
    )


class CountingTransport:
    """What the protocols call on a transport; writes are counted, never kept."""

    def __init__(self) -> None:
        self.writes = 0
        #: Set at a write while awaited (the publisher's answers, for an engine that
        #: commits); not set otherwise, so that the harness's own cost stays out.
        self.written = asyncio.Event()
        self.awaited = False

    def write(self, data: bytes) -> None:
        self.writes += 1
        if self.awaited:
            self.written.set()

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def abort(self) -> None:  # a ping deadline passed while a slow (counted) run went on
        pass

    def is_reading(self) -> bool:
        return True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


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


async def measure(
    subscribers: int, publishes: int, depth: int, data_dir: str | None, count: bool
) -> None:
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
    warm_up, reads = (
        reads[: len(reads) // 4 if count else 0],
        reads[len(reads) // 4 if count else 0 :],
    )
    for data in warm_up:  # (with --count) the channels' first publications are not counted
        protocol.data_received(data)
        await asyncio.sleep(0)
        if protocol._busy:
            publisher.written.clear()
            publisher.awaited = True
            await publisher.written.wait()
            publisher.awaited = False
    counter = WorkCounter(allocations=False)
    if count:
        counter.__enter__()
    started = time.process_time()
    threads = thread_times()
    for data in reads:
        protocol.data_received(data)
        await asyncio.sleep(0)  # the loop iteration's end: the fan-out's flush
        if protocol._busy:  # an engine that commits: until the answers are written
            publisher.written.clear()
            publisher.awaited = True
            await publisher.written.wait()
            publisher.awaited = False
    spent = time.process_time() - started
    per_thread = thread_times()
    counted = sum(len(r.split(b"POST ")) - 1 for r in reads)
    if count:
        counter.__exit__(None, None, None)
        print(f"{counter.per(counted)} on the loop's thread; bytecodes by function:")
        print(counter.top(counted))
    written = sum(t.writes for t in sinks)
    print(
        f"{spent / counted * 1e6:.2f} µs of CPU per publish; {written} subscriber writes, "
        f"{publisher.writes} answer writes"
    )
    if threads:
        print(f"CPU µs per publish by thread: {thread_report(threads, per_thread, counted)}")
    endpoint.wheel.close()
    await node.close()


def run_harness(
    measure: Callable[[int, int, int, str | None, bool], Coroutine[Any, Any, None]],
    description: str,
    depth: int,
) -> None:
    """The command line of a publish-path harness (this one's, the native route's): its
    options, then ``measure(subscribers, publishes, depth, data_dir, count)`` on uvloop."""
    parser = argparse.ArgumentParser(description=description.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--publishes", type=int, default=100_000)
    parser.add_argument("--depth", type=int, default=depth)
    parser.add_argument("--data-dir", help="the SQLite engine's directory (default: memory)")
    parser.add_argument("--count", action="store_true", help="count the work, not the time")
    args = parser.parse_args()
    uvloop.run(measure(args.subscribers, args.publishes, args.depth, args.data_dir, args.count))


def main() -> None:
    run_harness(measure, __doc__ or "", depth=8)


if __name__ == "__main__":
    main()
