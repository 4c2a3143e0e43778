"""Several orbiter nodes as one bench target (``orbiter bench --nodes N``): cross-node latency.

N ``orbiter serve`` processes share one Redis (``--orbiter-arg=--engine=redis://...``, or a
private ``redis-server`` started here on a free port when none is named); an ``nginx``
(:mod:`orbiter.nginx_front`) in front of them hands the subscribers' connections to the
nodes in turn (round robin: N nodes hold a share each), and the publisher posts to the
first node directly, so a publication reaches the other nodes' subscribers through Redis.
The single-node row of the same run has the same front, Redis and core
(``--server-cpu``), with one node behind it: the rows differ only by the nodes. The
target's CPU is that of every process here (nodes, nginx, the private Redis);
:meth:`SpawnedNodes.split` counts, from nginx's access log, the connections each node took.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from orbiter.bench.runner import BenchError, Target
from orbiter.bench.spawn import Spawned, Unavailable, _wait_listening, spawn
from orbiter.nginx_front import FrontSettings, NginxFailed, NginxFront, find_nginx
from orbiter.ports import free_port


def _binary(name: str, *fallbacks: str) -> str:
    found = shutil.which(name) or next((f for f in fallbacks if Path(f).exists()), None)
    if found is None:
        raise Unavailable(f"{name} is not installed (apt-get install {name})")
    return found


def engine_arg(orbiter_args: tuple[str, ...]) -> str | None:
    """The Redis URL ``orbiter_args`` name with ``--engine``; ``None`` if they name none, a
    :class:`BenchError` if they name another engine (nodes share channels through Redis)."""
    url = None
    for index, arg in enumerate(orbiter_args):
        if arg.startswith("--engine="):
            url = arg.split("=", 1)[1]
        elif arg == "--engine" and index + 1 < len(orbiter_args):
            url = orbiter_args[index + 1]
    if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
        raise BenchError(f"--nodes needs a Redis engine (--engine=redis://...), not {url!r}")
    return url


class PrivateRedis:
    """A ``redis-server`` of the run's own on a free 127.0.0.1 port, without persistence."""

    def __init__(self, cpu: str | None) -> None:
        binary = _binary("redis-server", "/usr/bin/redis-server")
        self._tmp = tempfile.TemporaryDirectory(prefix="orbiter-bench-redis-")
        self.port = free_port()
        pin = ["taskset", "-c", cpu] if cpu is not None and shutil.which("taskset") else []
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", self._tmp.name]
        self.process = subprocess.Popen(
            [*pin, *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            _wait_listening(self.port, self.process)
        except BenchError:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._tmp.cleanup()


@dataclass
class SpawnedNodes:
    """N orbiter nodes behind one nginx; :attr:`target` subscribes through nginx and
    publishes to the first node."""

    target: Target
    nodes: list[Spawned]
    front: NginxFront
    ports: list[int] = field(default_factory=list)

    def split(self, expected: int, wait: float = 5.0) -> dict[str, int]:
        """Connections each node took (by port), from nginx's access log: a WebSocket's line
        is written when it closes; waits up to ``wait`` s for ``expected`` lines."""
        counts: Counter[str] = Counter()
        deadline = time.monotonic() + wait
        while True:
            with contextlib.suppress(OSError):
                lines = self.front.access_log.read_text().split()
                counts = Counter(line.rsplit(":", 1)[-1] for line in lines)
            if sum(counts.values()) >= expected or time.monotonic() > deadline:
                return {str(port): counts.get(str(port), 0) for port in self.ports}
            time.sleep(0.1)

    def stop(self) -> None:
        self.front.stop()  # graceful: the access log is complete
        for node in self.nodes:
            node.stop()


def spawn_nodes(
    count: int,
    name: str,
    cpu: str | None,
    orbiter_args: tuple[str, ...],
    redis_url: str,
    write_delay: float = 0.005,
    extra_pids: tuple[int, ...] = (),
) -> SpawnedNodes:
    """``count`` orbiter nodes on ``redis_url`` behind an nginx, as the target ``name``;
    ``extra_pids`` (a private Redis) are counted in its CPU."""
    nginx = find_nginx()
    if nginx is None:
        raise Unavailable("nginx is not installed (apt-get install nginx)")
    engine = () if engine_arg(orbiter_args) else ("--engine", redis_url)
    nodes: list[Spawned] = []
    try:
        for _ in range(count):
            nodes.append(spawn("orbiter", cpu, (*orbiter_args, *engine), None, write_delay))
        ports = [node.target.host_port[1] for node in nodes]
        settings = FrontSettings(
            listen=f"127.0.0.1:{free_port()}",
            upstreams=tuple(f"127.0.0.1:{p}" for p in ports),
            access_log="$upstream_addr",  # one line per connection: split()
            worker_connections=100_000,
            open_files=200_000,
            backlog=4096,
            proxy_timeout=3600,  # a bench's subscribers may wait long for a publication
        )
        front = NginxFront(settings, nginx)
        pin = ["taskset", "-c", cpu] if cpu is not None and shutil.which("taskset") else []
        try:
            front.start(pin)
        except NginxFailed as exc:
            front.stop()
            raise BenchError(f"nginx did not start in front of the nodes: {exc}") from None
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    first = nodes[0].target
    others = [n.target.pid for n in nodes[1:] if n.target.pid]
    pids = (*others, *(() if front.pid is None else (front.pid,)), *extra_pids)
    url = f"http://127.0.0.1:{front.port}"
    target = replace(first, name=name, url=url, pub_url=first.url, pids=pids)
    return SpawnedNodes(target, nodes, front, ports)
