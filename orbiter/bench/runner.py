"""Runs one scenario against one server: the load generator, /proc samples, the result.

The C load generator (:mod:`orbiter.bench.native`) opens every subscriber,
says ``READY``; the server's CPU time and RSS are sampled; ``GO`` starts
the publisher; ``DONE`` ends the measured span, and its JSON report is
turned into the result here.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import orjson

from orbiter.bench import procstat, stats
from orbiter.bench.flavors import channel_name, global_lines, subscriber_lines
from orbiter.bench.native import loadgen_binary
from orbiter.bench.scenarios import Scenario

MARKER_BYTES = 20  # "#B<seq>.<usec>#" is at most about this long


class BenchError(Exception):
    pass


@dataclass(frozen=True)
class Target:
    name: str
    flavor: str
    url: str
    pid: int | None = None
    #: Where the publisher connects, when not to ``url`` (Pushpin's control port).
    pub_url: str | None = None
    #: The target's other processes, whose CPU and memory count with ``pid``'s (the
    #: other nodes of ``--nodes N``, their nginx and Redis).
    pids: tuple[int, ...] = ()

    @property
    def host_port(self) -> tuple[str, int]:
        return _host_port(self.url)

    @property
    def pub_host_port(self) -> tuple[str, int]:
        return _host_port(self.pub_url or self.url)


def _sample(target: Target) -> procstat.ProcSample | None:
    """CPU and memory of the target's processes so far; ``None`` if it names none."""
    return procstat.sample_all((target.pid, *target.pids)) if target.pid else None


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise BenchError(f"target URL {url!r} needs a host and a port")
    return parts.hostname, parts.port


def loadgen_config(scenario: Scenario, target: Target) -> tuple[str, list[int]]:
    """The load generator's config text, and each subscriber's channel index."""
    host, port = target.host_port
    pub_host, pub_port = target.pub_host_port
    channels = max(scenario.channels, 1)
    lines = [
        f"host {host}",
        f"port {port}",
        f"pub_host {pub_host}",
        f"pub_port {pub_port}",
        f"timeout_ms {int(scenario.timeout * 1000)}",
        f"settle_ms {int(scenario.settle * 1000)}",
        f"churn_ms {int(scenario.churn * 1000)}",
        f"nmsgs {scenario.messages}",
        f"padding {max(0, scenario.payload - MARKER_BYTES)}",
        f"pub_rate {scenario.rate}",
        f"pub_depth {scenario.depth}",
        *global_lines(target.flavor, scenario),
    ]
    lines += [f"channel {channel_name(i)}" for i in range(channels)]
    subscriber_channels = [i % channels for i in range(scenario.subscribers)]
    expected = stats.expected_per_subscriber(subscriber_channels, channels, scenario.messages)
    lines.append(f"expected {sum(expected)}")
    for i, ch in enumerate(subscriber_channels):
        lines += subscriber_lines(target.flavor, scenario, channel_name(ch), i)
        lines.append(f"subscribes {ch}")
    return "\n".join(lines) + "\n", subscriber_channels


#: Seconds between two progress lines when the output is not a terminal.
PLAIN_INTERVAL = 1.0


class Progress:
    """One run's progress: a bar redrawn in place (``\\r``) on a terminal; else (a pipe,
    a log file, CI) a plain line at most every :data:`PLAIN_INTERVAL` seconds, and a last
    one at the end, with no control characters."""

    def __init__(self, out: IO[str], label: str, total: int) -> None:
        self._out = out
        self._label = label
        self._total = total
        self._tty = out.isatty()
        self._next_line = 0.0
        self._last = ""

    def update(self, done: int, rate: float) -> None:
        frac = min(1.0, done / self._total) if self._total else 1.0
        if self._tty:
            bar = "#" * int(frac * 30)
            counts = f"{frac * 100:5.1f}% {done:>10,}/{self._total:,} {rate:>10,.0f}/s"
            self._out.write(f"\r{self._label:<24} [{bar:<30}] {counts} ")
            self._out.flush()
            return
        self._last = f"{self._label}: {frac * 100:.1f}% {done:,}/{self._total:,} {rate:,.0f}/s\n"
        now = time.monotonic()
        if now >= self._next_line:
            self._next_line = now + PLAIN_INTERVAL
            self._out.write(self._last)
            self._last = ""
            self._out.flush()

    def end(self) -> None:
        """The run is done: end the bar's line, or write the last count not yet written."""
        self._out.write("\n" if self._tty else self._last)
        self._last = ""
        self._out.flush()


def run(
    scenario: Scenario,
    target: Target,
    *,
    loadgen_cpu: int | None = None,
    progress: IO[str] | None = sys.stderr,
) -> dict[str, Any]:
    """Run ``scenario`` against ``target``; the result as a JSON-able dict."""
    config, subscriber_channels = loadgen_config(scenario, target)
    expected = stats.expected_per_subscriber(
        subscriber_channels, max(scenario.channels, 1), scenario.messages
    )
    binary = loadgen_binary()
    base = _sample(target)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory(prefix="orbiter-bench-") as tmp:
        path = Path(tmp) / "loadgen.conf"
        path.write_text(config)
        cmd = [str(binary), str(path)]
        if loadgen_cpu is not None:
            cmd = ["taskset", "-c", str(loadgen_cpu), *cmd]
        # Its complaints go to a file: a pipe nobody reads during the run fills at 64 KiB
        # (one line per refused connection) and would stall the load generator for good.
        with (Path(tmp) / "loadgen.err").open("w+") as err:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True
            )
            try:
                report, at_ready, at_done, wall, spread = _drive(
                    proc, scenario, target, sum(expected), progress
                )
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                err.seek(0)
                errors = err.read()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = _result(scenario, target, report, expected, base, at_ready, at_done, wall, errors)
    if "server" in result:
        result["server"]["connections_by_process"] = sorted(spread.values(), reverse=True)
    result["loadgen_cpu_s"] = (after.ru_utime + after.ru_stime) - (
        before.ru_utime + before.ru_stime
    )
    return result


def _drive(
    proc: subprocess.Popen[str],
    scenario: Scenario,
    target: Target,
    total: int,
    progress: IO[str] | None,
) -> tuple[
    dict[str, Any], procstat.ProcSample | None, procstat.ProcSample | None, float, dict[int, int]
]:
    """Drive the load generator: its report, the server's samples when subscribers were ready
    and when publishing was done, the time between, and the connections each of the target's
    processes held when ready (``--workers N``: the kernel's spread)."""
    assert proc.stdin is not None
    assert proc.stdout is not None
    at_ready = at_done = None
    spread: dict[int, int] = {}
    started = 0.0
    wall = 0.0
    label = f"{target.name} {scenario.name}"
    bar = Progress(progress, label, total) if progress is not None else None
    for line in proc.stdout:
        if line.startswith("READY"):
            _, ok, failed = line.split()
            if progress is not None:
                progress.write(f"{label}: {ok} subscribers ready, {failed} failed\n")
            at_ready = _sample(target)
            if target.pid:
                spread = procstat.connections_by_process(
                    (target.pid, *target.pids), target.host_port[1]
                )
            started = time.monotonic()
            proc.stdin.write("GO\n")
            proc.stdin.flush()
        elif line.startswith("P "):
            _, _pubs, unique, _dup = line.split()
            if bar is not None:
                elapsed = time.monotonic() - started
                bar.update(int(unique), int(unique) / max(elapsed, 1e-9))
        elif line.startswith("DONE"):
            wall = time.monotonic() - started
            at_done = _sample(target)
            if bar is not None:
                bar.end()
        elif line.startswith("{"):
            return orjson.loads(line), at_ready, at_done, wall, spread
    raise BenchError(f"the load generator ended without a report (exit {proc.wait()})")


def _result(
    scenario: Scenario,
    target: Target,
    report: dict[str, Any],
    expected: list[int],
    base: procstat.ProcSample | None,
    at_ready: procstat.ProcSample | None,
    at_done: procstat.ProcSample | None,
    wall: float,
    errors: str,
) -> dict[str, Any]:
    conns = report["connections"]
    unique = [c[0] for c in conns]
    lost, lossy = stats.loss(expected, unique)
    failed = sum(1 for c in conns if c[2] == 2)
    closed = sum(1 for c in conns if c[2] == 1)
    hist = report["histogram"]
    lat_max = report["latency_max_us"]
    delivered = report["unique"]
    first, last_recv = report["first_send_us"], report["last_recv_us"]
    result: dict[str, Any] = {
        "target": asdict(target),
        "scenario": asdict(scenario),
        "subscribers": len(conns),
        "subscribers_failed": failed,
        "subscribers_closed": closed,
        "published": report["published"],
        "publish_acked": report["acked"],
        "publish_errors": report["publish_errors"],
        "publisher_reconnects": report.get("publisher_reconnects", 0),
        "publisher_connects": report.get("publisher_connects", 0),
        "deliveries": delivered,
        "expected_deliveries": sum(expected),
        "lost": lost,
        "subscribers_with_loss": lossy,
        "duplicates": report["duplicates"],
        "unexpected": report["bad"],
        "deliveries_per_s": stats.per_second(delivered, first, last_recv),
        "publish_per_s": stats.per_second(report["published"], first, report["last_pub_us"]),
        "latency_ms": {
            name: stats.percentile(hist, frac, lat_max) / 1000
            for name, frac in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
        }
        | {"max": lat_max / 1000},
        "duration_s": wall,
        "windows": report["windows"],
        "histogram": hist,
        "loadgen_errors": errors.strip().splitlines()[-20:],
    }
    if scenario.transport == "longpoll":
        result["polls"] = report["polls"]
        result["polls_unrecoverable"] = report["polls_unrecoverable"]
        result["poll_errors"] = report["poll_errors"]
    if scenario.churn:
        result["churn_cycles"] = report["churn_cycles"]
        result["churn_failures"] = report["churn_failures"]
        result["connects_per_s"] = report["churn_cycles"] / scenario.churn
    if scenario.rate and scenario.messages:
        span_us = (scenario.messages - 1) / scenario.rate * 1e6
        late = (last_recv - first) - span_us
        result["keeps_up"] = lost == 0 and late <= max(500_000, 0.1 * span_us)
        result["offered_deliveries_per_s"] = scenario.rate * sum(expected) / scenario.messages
    # One acknowledgement per request: a batched request carries ``batch`` publications.
    per_ack = scenario.batch if scenario.route == "batch" else 1
    publications = min(report["published"], report["acked"] * per_ack)
    if at_ready is not None and at_done is not None and base is not None:
        cpu = at_done.cpu_s - at_ready.cpu_s
        result["server"] = {
            "processes": at_done.processes,
            "cpu_s": cpu,
            "cpu_user_s": at_done.user_s - at_ready.user_s,
            "rss_base_kib": base.rss_bytes / 1024,
            "rss_ready_kib": at_ready.rss_bytes / 1024,
            "rss_per_subscriber_kib": (at_ready.rss_bytes - base.rss_bytes) / 1024 / len(conns)
            if conns
            else 0.0,
            "cpu_s_per_million_deliveries": cpu / delivered * 1e6 if delivered else None,
            "cpu_s_per_million_publishes": cpu / publications * 1e6 if publications else None,
            "cpu_ms_per_connect": cpu / report["churn_cycles"] * 1e3
            if report.get("churn_cycles")
            else None,
        }
    return result


def set_nofile_limit() -> None:
    """Raise this process's open-file limit to the hard limit (servers we spawn inherit it)."""

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
