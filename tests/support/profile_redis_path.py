"""CPU per publication through the Redis engine, in one process: a profiling aid.

Run: ``.venv/bin/python -m tests.support.profile_redis_path URL [--mode many|fanout]
[--subscribers N] [--publishes N] [--depth N] [--commit-wait S] [--network]
[--count | --profile FILE]``, where ``URL`` is a running ``redis-server`` of yours
(``redis://127.0.0.1:PORT/0``; a Redis Cluster's ``redis+cluster://127.0.0.1:PORT`` runs
the cluster mode, ``redis-server`` being then the sum over its masters; ``memory`` runs
the embedded memory engine instead, for the same harness's figure beside it). ``python
-m tests.support.profile_redis_path cluster`` starts a 3-master cluster
(``tests/support/redis_cluster.py``), prints its URL and holds it until interrupted.

``many``: what ``orbiter bench many-channels`` makes a server do, as
``tests/support/profile_publish_path.py`` does it on the embedded engines:
``depth`` pipelined ``POST /api/publish`` per read, each to another subscriber's
channel, answered once Redis kept them, then delivered back from Redis's
pub/sub. ``fanout``: ``tests/support/profile_fanout_path.py``'s publisher,
keeping ``depth`` requests in flight to one channel of ``subscribers``.
Transports are stand-ins that count writes. It prints this process's CPU per
publication and per delivery, and ``redis-server``'s (read from ``/proc`` when
it runs on this machine), and the subscriber writes per publication (fewer: more
publications share each write).

``--commit-wait``: ``engine.commit_wait`` (0: a flush never waits for Redis's
answer; ``engine/redis_publishing.py``). ``--network`` (fanout): the publisher's
next requests come through a socket pair, read by the loop in its I/O phase as a
real client's are, rather than by a callback of the next iteration (which runs
before that iteration's I/O: an answer read there then looks a whole iteration
sooner than a real client's next request would come). ``--count``: the
interpreter's work per publication instead
(:class:`~tests.support.work_counter.WorkCounter`, not slowed by other processes;
use a few thousand publications); ``--profile``: a cProfile dump.
Not a test: pytest does not collect it.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import resource
import signal
import socket
import sys
import time
import tomllib
from dataclasses import replace
from pathlib import Path

import orjson
import redis.asyncio as aioredis
import uvloop

from orbiter.bench.spawn import BENCH_CONFIG
from orbiter.config.settings import config_from_dict
from orbiter.http.fast_publish import FastPublishProtocol, _DateHeader
from orbiter.node import Node
from orbiter.transports.websocket import NativeWebSocket, _Endpoint
from tests.support.profile_fanout_path import Publisher
from tests.support.profile_fanout_path import request as fanout_request
from tests.support.profile_publish_path import CountingTransport, requests
from tests.support.standins import StandInTakeover
from tests.support.work_counter import WorkCounter


async def _redis_pids(url: str) -> list[int]:
    """The ``redis-server`` processes behind ``url`` (a cluster's masters)."""
    if url == "memory":
        return []
    if url.startswith("redis+cluster://"):
        client = aioredis.Redis.from_url(url.replace("+cluster://", "://", 1))
        try:
            nodes = await client.execute_command("CLUSTER", "NODES")  # type: ignore[no-untyped-call]
        finally:
            await client.aclose()
        text = nodes.decode() if isinstance(nodes, bytes) else str(nodes)
        addresses = [
            line.split()[1].split("@")[0] for line in text.splitlines() if "master" in line
        ]
        urls = [f"redis://{address}/0" for address in addresses]
    else:
        urls = [url]
    pids = []
    for each in urls:
        client = aioredis.Redis.from_url(each)
        try:
            pids.append(int((await client.info("server"))["process_id"]))
        finally:
            await client.aclose()
    return pids


class NetworkPublisher(Publisher):
    """The fanout publisher, its next requests sent through a socket pair: the loop reads
    them in its I/O phase (a reader of the other end), as it reads a real client's."""

    def __init__(self, total: int) -> None:
        super().__init__(total)
        self.ours, self.theirs = socket.socketpair()
        self.ours.setblocking(False)
        self.theirs.setblocking(False)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_reader(self.theirs.fileno(), self._readable)

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.remove_reader(self.theirs.fileno())
        self.ours.close()
        self.theirs.close()

    def _readable(self) -> None:
        data = self.theirs.recv(1 << 20)
        if data and self.protocol is not None:
            self.protocol.data_received(data)

    def write(self, data: bytes) -> None:
        self.writes += 1
        answers = data.count(b"HTTP/1.1 200")
        self.answered += answers
        if self.answered >= self.total:
            self.done.set()
        more = min(answers, self.total - self.sent)
        if more > 0:
            reads = b"".join(fanout_request(self.sent + i) for i in range(more))
            self.sent += more
            self.ours.sendall(reads)


def _ticks(pids: list[int]) -> int:
    """The processes' CPU ticks (utime + stime), 0 for one that does not run on this machine."""
    total = 0
    for pid in pids:
        if Path(f"/proc/{pid}/stat").exists():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total


async def measure(args: argparse.Namespace) -> None:
    session = "[session]\nwrite_delay = 0.005\n"  # as orbiter bench runs it
    config = config_from_dict(tomllib.loads(BENCH_CONFIG.format(session=session, limits="")))
    engine = config.engine
    if args.commit_wait is not None:
        engine = replace(engine, commit_wait=args.commit_wait)
    if args.url == "memory":
        config = replace(config, engine=replace(engine, kind="memory"))
    else:
        config = replace(config, engine=replace(engine, kind="redis", url=args.url))
    pid = await _redis_pids(args.url)
    node = Node(config)
    await node.start()
    endpoint = _Endpoint(node)
    sinks = []
    for index in range(args.subscribers):
        client = node.new_session("127.0.0.1")
        transport = CountingTransport()
        NativeWebSocket(endpoint, None, client, "127.0.0.1").connection_made(transport)  # type: ignore[arg-type]
        await client.receive('{"id":1,"op":"connect"}')
        channel = f"bench{index}" if args.mode == "many" else "bench0"
        await client.receive(orjson.dumps({"id": 2, "op": "subscribe", "channel": channel}))
        sinks.append(transport)
    await asyncio.sleep(0.1)
    counter = WorkCounter(allocations=False)
    profiler = cProfile.Profile(time.process_time)  # CPU, not wall time (a busy machine)
    if args.mode == "many":
        publisher = CountingTransport()
        protocol = FastPublishProtocol(StandInTakeover(publisher), node, _DateHeader())  # type: ignore[arg-type]
        protocol.connection_made(publisher)  # type: ignore[arg-type]
        reads = requests(args.subscribers, args.publishes, args.depth)
        warm, reads = reads[: len(reads) // 4], reads[len(reads) // 4 :]

        async def run(batch: list[bytes]) -> None:
            for data in batch:
                protocol.data_received(data)
                await asyncio.sleep(0)
                if protocol._busy:  # until the answers are written
                    publisher.written.clear()
                    publisher.awaited = True
                    await publisher.written.wait()
                    publisher.awaited = False

        await run(warm)
        await asyncio.sleep(0.1)
        for transport in sinks:
            transport.writes = 0
        count = sum(len(r.split(b"POST ")) - 1 for r in reads)
        before, ticks, started = time.process_time(), _ticks(pid), time.monotonic()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        if args.count:
            counter.__enter__()
        if args.profile:
            profiler.enable()
        await run(reads)
        delivered = sum(t.writes for t in sinks)
        deadline = time.monotonic() + 30
        while delivered < count and time.monotonic() < deadline:
            await asyncio.sleep(0.001)  # the last deliveries, back from Redis
            delivered = sum(t.writes for t in sinks)
        deliveries = count
    else:
        fan = NetworkPublisher(args.publishes) if args.network else Publisher(args.publishes)
        if isinstance(fan, NetworkPublisher):
            fan.start(asyncio.get_running_loop())
        protocol = FastPublishProtocol(StandInTakeover(fan), node, _DateHeader())  # type: ignore[arg-type]
        fan.protocol = protocol
        protocol.connection_made(fan)  # type: ignore[arg-type]
        count = args.publishes
        before, ticks, started = time.process_time(), _ticks(pid), time.monotonic()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        if args.count:
            counter.__enter__()
        if args.profile:
            profiler.enable()
        fan.sent = args.depth
        protocol.data_received(b"".join(fanout_request(i) for i in range(args.depth)))
        await asyncio.wait_for(fan.done.wait(), 120)
        await asyncio.sleep(0.05)  # the last deliveries
        deliveries = count * args.subscribers
        delivered = sum(t.writes for t in sinks)
        if isinstance(fan, NetworkPublisher):
            fan.stop(asyncio.get_running_loop())
    if args.profile:
        profiler.disable()
        profiler.dump_stats(args.profile)
    if args.count:
        counter.__exit__(None, None, None)
    spent, elapsed = time.process_time() - before, time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    system = after.ru_stime - usage.ru_stime
    redis_cpu = (_ticks(pid) - ticks) / 100
    print(
        f"{args.url} {args.mode}: {spent / count * 1e6:.2f} µs of CPU per publication "
        f"({spent / deliveries * 1e6:.3f} per delivery, {system / count * 1e6:.2f} in the "
        f"kernel) + redis-server "
        f"{redis_cpu / count * 1e6:.2f}; {count / elapsed:.0f} publications/s; "
        f"{delivered} subscriber writes ({delivered / count:.1f} per publication)"
    )
    if args.count:
        print(f"{counter.per(count)} per publication; bytecodes by function:")
        print(counter.top(count))
    endpoint.wheel.close()
    await node.close()


def _hold_a_cluster() -> None:
    from tests.support.redis_cluster import RedisCluster

    cluster = RedisCluster()
    print(cluster.url, flush=True)
    for each in (signal.SIGINT, signal.SIGTERM):  # a background job ignores SIGINT
        signal.signal(each, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    finally:
        cluster.close()


def main() -> None:
    if sys.argv[1:] == ["cluster"]:
        _hold_a_cluster()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="redis://127.0.0.1:PORT/0 of a running redis-server, or memory")
    parser.add_argument("--mode", choices=("many", "fanout"), default="many")
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--publishes", type=int, default=20_000)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument(
        "--commit-wait", type=float, help="engine.commit_wait in seconds (default: its default)"
    )
    parser.add_argument(
        "--network", action="store_true", help="fanout: the requests come through a socket"
    )
    parser.add_argument("--count", action="store_true", help="count the work, not the time")
    parser.add_argument("--profile", help="write a cProfile dump here")
    uvloop.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
