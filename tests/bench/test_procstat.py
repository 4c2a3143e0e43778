"""The server's CPU time and RSS as the bench reads them from /proc, split into user and system."""

from __future__ import annotations

import os
import time

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


def test_the_summary_gives_the_user_share_of_the_servers_cpu() -> None:
    server: dict[str, float] = {"cpu_s": 2.0, "cpu_user_s": 0.5}
    run: dict[str, object] = {
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
    assert summarize([run])["cpu_user_pct"] == 25.0
    del server["cpu_user_s"]  # a result from before the split
    assert summarize([run])["cpu_user_pct"] is None
