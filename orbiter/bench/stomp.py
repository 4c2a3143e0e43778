"""``python -m orbiter.bench.stomp``: topic fan-out and queue throughput with STOMP clients.

The ``orbiter bench`` load generator speaks orbiter's native protocol, so
STOMP gets this small driver: asyncio STOMP 1.2 clients over TCP (frames
parsed by :mod:`orbiter.protocol.stomp`), run in this process against a
broker in another: ``orbiter serve`` spawned with a STOMP listener, and,
when ``rabbitmq-server`` is installed, RabbitMQ's STOMP plugin as a peer
measured in the same run. Two scenarios:

- ``fanout``: ``--subscribers`` connections on one topic, one publisher sends
  ``--messages`` SENDs; the time until every subscriber has every message,
  deliveries per second, and end-to-end latency percentiles;
- ``queue``: ``--producers`` send ``--queue-messages`` in total to one queue
  that ``--consumers`` consume (``client-individual`` acks); messages per second.

The driver is Python on the same machine: on a small machine it, not the
broker, may be the limit; the broker's CPU time is reported beside the rates.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from orbiter.bench.procstat import sample
from orbiter.ports import free_port
from orbiter.protocol.stomp import Frame, FrameParser, Limits, encode_frame

ORBITER_CONFIG = """\
[stomp]
listen = "127.0.0.1:{port}"
max_queue_length = 1000000
max_queue_bytes = 1073741824
max_total_queue_bytes = 1073741824
max_client_queue_bytes = 1073741824
[limits]
max_connections = 1000000
max_connections_per_ip = 1000000
outgoing_buffer = 67108864
"""


class StompConnection:
    """One STOMP 1.2 client connection: frames out, frames in (a queue of them)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = FrameParser(Limits(max_body=1 << 24), version="1.2")
        self.frames: asyncio.Queue[Frame] = asyncio.Queue()
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def open(
        cls, port: int, login: str = "guest", passcode: str = "guest"
    ) -> StompConnection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        conn = cls(reader, writer)
        conn.send(
            "CONNECT",
            [
                ("accept-version", "1.2"),
                ("host", "/"),
                ("login", login),
                ("passcode", passcode),
                ("heart-beat", "0,0"),
            ],
        )
        frame = await conn.next()
        if frame.command != "CONNECTED":
            raise RuntimeError(f"CONNECT refused: {frame.get('message')} {frame.body!r}")
        return conn

    def send(self, command: str, headers: list[tuple[str, str]], body: bytes = b"") -> None:
        self.writer.write(encode_frame(command, headers, body, "1.2"))

    async def next(self, timeout: float = 60.0) -> Frame:
        return await asyncio.wait_for(self.frames.get(), timeout)

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await self.reader.read(262_144):
                for frame in self.parser.feed(data):
                    self.frames.put_nowait(frame)

    async def close(self) -> None:
        self._task.cancel()
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


async def _subscribe(conn: StompConnection, destination: str, ack: str = "auto") -> None:
    receipt = f"sub-{id(conn)}"
    conn.send(
        "SUBSCRIBE",
        [("id", "1"), ("destination", destination), ("ack", ack), ("receipt", receipt)],
    )
    frame = await conn.next()
    if frame.command != "RECEIPT":
        raise RuntimeError(f"SUBSCRIBE refused: {frame.get('message')}")


@dataclass
class Result:
    name: str
    seconds: float
    count: int
    cpu_s: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def fanout(port: int, pid: int, topic: str, subscribers: int, messages: int) -> Result:
    subs = [await StompConnection.open(port) for _ in range(subscribers)]
    for conn in subs:
        await _subscribe(conn, topic)
    publisher = await StompConnection.open(port)
    latencies: list[float] = []

    async def drain(conn: StompConnection) -> None:
        for _ in range(messages):
            frame = await conn.next()
            sent = float(frame.body.split(b" ", 1)[0])
            latencies.append((time.perf_counter() - sent) * 1000)

    cpu0 = sample(pid).cpu_s
    start = time.perf_counter()
    readers = [asyncio.create_task(drain(conn)) for conn in subs]
    for i in range(messages):
        publisher.send("SEND", [("destination", topic)], f"{time.perf_counter()!r} {i}".encode())
        if i % 100 == 0:
            await publisher.writer.drain()
    await publisher.writer.drain()
    await asyncio.gather(*readers)
    seconds = time.perf_counter() - start
    cpu = sample(pid).cpu_s - cpu0
    for conn in [*subs, publisher]:
        await conn.close()
    return Result("fanout", seconds, subscribers * messages, cpu, latencies)


async def queue(
    port: int, pid: int, name: str, producers: int, consumers: int, messages: int
) -> Result:
    cons = [await StompConnection.open(port) for _ in range(consumers)]
    for conn in cons:
        await _subscribe(conn, name, ack="client-individual")
    prods = [await StompConnection.open(port) for _ in range(producers)]
    received = 0
    done = asyncio.Event()

    async def consume(conn: StompConnection) -> None:
        nonlocal received
        while not done.is_set():
            try:
                frame = await conn.next(timeout=0.5)
            except TimeoutError:
                continue
            if frame.command != "MESSAGE":
                raise RuntimeError(f"consumer got {frame.command}: {frame.get('message')}")
            conn.send("ACK", [("id", frame.get("ack") or "")])
            received += 1
            if received >= messages:
                done.set()

    async def produce(conn: StompConnection, count: int) -> None:
        for i in range(count):
            conn.send("SEND", [("destination", name)], b"x" * 100)
            if i % 50 == 0:
                await conn.writer.drain()
        await conn.writer.drain()

    cpu0 = sample(pid).cpu_s
    start = time.perf_counter()
    consuming = [asyncio.create_task(consume(conn)) for conn in cons]
    share = messages // producers
    await asyncio.gather(*(produce(conn, share) for conn in prods))
    await asyncio.wait_for(done.wait(), 300)
    seconds = time.perf_counter() - start
    cpu = sample(pid).cpu_s - cpu0
    await asyncio.gather(*consuming)
    for conn in [*cons, *prods]:
        await conn.close()
    return Result("queue", seconds, share * producers, cpu, [])


@contextlib.contextmanager
def spawn_orbiter() -> Iterator[tuple[int, int]]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="orbiter-bench-stomp-") as tmp:
        conf = Path(tmp) / "orbiter.toml"
        conf.write_text(ORBITER_CONFIG.format(port=port))
        cmd = [sys.executable, "-m", "orbiter", "serve", "--port", str(free_port())]
        cmd += ["--config", str(conf), "--log-level", "warning"]
        # Run in the temporary directory: orbiter's data directory goes there too.
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
        try:
            _wait_port(port, proc, 20)
            yield port, proc.pid
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


RABBIT_CONFIG = """\
listeners.tcp = none
stomp.listeners.tcp.1 = 127.0.0.1:{stomp}
management.tcp.port = {mgmt}
loopback_users = none
"""


@contextlib.contextmanager
def spawn_rabbitmq() -> Iterator[tuple[int, int]]:
    """RabbitMQ with its STOMP plugin, its state in a temporary directory."""
    # The package's own script (not the /usr/sbin wrapper, which switches user).
    server = "/usr/lib/rabbitmq/bin/rabbitmq-server"
    if not Path(server).exists():
        raise FileNotFoundError("rabbitmq-server is not installed")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="orbiter-bench-rabbit-") as tmp:
        base = Path(tmp)
        (base / "rabbitmq.conf").write_text(RABBIT_CONFIG.format(stomp=port, mgmt=free_port()))
        (base / "enabled_plugins").write_text("[rabbitmq_stomp].\n")
        env = {
            **os.environ,
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_NODENAME": f"bench{port}@localhost",
            "RABBITMQ_NODE_PORT": str(free_port()),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "ERL_EPMD_PORT": str(free_port()),
            "HOME": str(base),
        }
        proc = subprocess.Popen(
            [server], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        try:
            _wait_port(port, proc, 90)
            yield port, proc.pid
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the broker exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f} s")


async def run_all(port: int, pid: int, args: argparse.Namespace, rabbit: bool) -> list[Result]:
    topic = "/topic/bench.stomp" if rabbit else "/topic/bench:stomp"
    results = [await fanout(port, pid, topic, args.subscribers, args.messages)]
    results.append(
        await queue(port, pid, "/queue/bench", args.producers, args.consumers, args.queue_messages)
    )
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m orbiter.bench.stomp", description=__doc__)
    p.add_argument("--subscribers", type=int, default=200)
    p.add_argument("--messages", type=int, default=1000)
    p.add_argument("--producers", type=int, default=4)
    p.add_argument("--consumers", type=int, default=4)
    p.add_argument("--queue-messages", type=int, default=20_000)
    p.add_argument("--no-rabbitmq", action="store_true", help="do not run RabbitMQ as a peer")
    args = p.parse_args(argv)
    brokers = [("orbiter", spawn_orbiter)]
    if not args.no_rabbitmq:
        brokers.append(("rabbitmq", spawn_rabbitmq))
    print("| broker | scenario | count | seconds | per second | broker CPU s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for name, spawner in brokers:
        try:
            with spawner() as (port, pid):
                results = asyncio.run(run_all(port, pid, args, name == "rabbitmq"))
        except (FileNotFoundError, RuntimeError) as exc:
            print(f"| {name} | unavailable: {exc} | | | | | | |")
            continue
        for r in results:
            latency = (
                f"{r.percentile(0.5):.1f} | {r.percentile(0.99):.1f}" if r.latencies_ms else "|"
            )
            print(
                f"| {name} | {r.name} | {r.count} | {r.seconds:.2f} | {r.rate:,.0f} | "
                f"{r.cpu_s:.2f} | {latency} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
