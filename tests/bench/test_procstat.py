"""The server's CPU time and RSS as the bench reads them from /proc, split into user and system."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import Any

from orbiter.bench import procstat
from orbiter.bench.report import summarize


def test_busy_python_is_user_time_and_writes_are_system_time() -> None:
    before = procstat.sample(os.getpid())
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        sum(range(1000))
    busy = procstat.sample(os.getpid())
    with open(os.devnull, "wb") as null:
        deadline = time.process_time() + 0.3
        while time.process_time() < deadline:
            for _ in range(1000):
                os.write(null.fileno(), b"x")  # a system call that does nothing: kernel time
    writing = procstat.sample(os.getpid())
    assert busy.cpu_s - before.cpu_s >= 0.25
    assert busy.user_s - before.user_s >= 0.8 * (busy.cpu_s - before.cpu_s)
    assert writing.cpu_s - busy.cpu_s >= 0.25
    assert (writing.cpu_s - writing.user_s) - (busy.cpu_s - busy.user_s) >= 0.05
    assert before.rss_bytes > 0
    assert before.processes >= 1


def _run(server: dict[str, Any]) -> dict[str, Any]:
    """One run's result, as the runner writes it, with ``server``'s figures."""
    return {
        "target": {"name": "t"},
        "deliveries_per_s": 1.0,
        "publish_per_s": 1.0,
        "latency_ms": {"p50": 1.0, "p99": 1.0, "max": 1.0},
        "deliveries": 1,
        "expected_deliveries": 1,
        "lost": 0,
        "duplicates": 0,
        "subscribers_failed": 0,
        "server": server,
    }


def test_the_summary_gives_the_user_share_of_the_servers_cpu() -> None:
    server: dict[str, Any] = {"cpu_s": 2.0, "cpu_user_s": 0.5}
    run = _run(server)
    assert summarize([run])["cpu_user_pct"] == 25.0
    del server["cpu_user_s"]  # a result from before the split
    assert summarize([run])["cpu_user_pct"] is None


def test_the_connections_each_process_holds_are_counted_by_port() -> None:
    """Two processes (this one and a child) each hold accepted connections to one port: the
    count is per process and only of that port's established connections."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    other = socket.create_server(("127.0.0.1", 0))
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    clients.append(socket.create_connection(other.getsockname()))
    held = [listener.accept()[0] for _ in range(5)]
    held.append(other.accept()[0])
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        pass_fds=[s.fileno() for s in held[:2]],
    )
    try:
        for sock in held[:2]:  # the child holds two, this process three (and the other port's)
            sock.close()
        counts = procstat.connections_by_process((os.getpid(),), port)
        assert sorted(counts.values()) == [2, 3]
        assert counts[os.getpid()] == 3
        assert counts[child.pid] == 2
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)
        for sock in [*clients, *held, listener, other]:
            sock.close()


def test_the_summary_gives_the_busiest_processs_share_only_for_several() -> None:
    run = _run({"cpu_s": 1.0, "connections_by_process": [600, 400]})
    assert summarize([run])["busiest_process_pct"] == 60.0
    run["server"]["connections_by_process"] = [1000]
    assert "busiest_process_pct" not in summarize([run])
