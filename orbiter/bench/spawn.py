"""Starts the servers a bench run compares: orbiter itself and the peers, each pinned to a core.

Each spawned server listens on a free 127.0.0.1 port and is stopped (by
its PID) when the run ends. A peer whose program is not installed is
reported as unavailable instead of failing the run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from orbiter.bench.runner import BenchError, Target, set_nofile_limit

PEERS_DIR = Path(__file__).resolve().parent / "peers"
#: name -> flavor of every server ``--spawn`` knows.
SPAWNABLE = {
    "orbiter": "orbiter",
    "orbiter-before": "orbiter",
    "aiohttp": "broadcast",
    "websockets": "broadcast-ws",
    "node-ws": "broadcast",
    "nchan-1": "nchan",
    "nchan-2": "nchan",
    "socketio": "socketio",
}

BENCH_CONFIG = """\
[limits]
max_http_body = 16777216
max_connections = 1000000
max_connections_per_ip = 1000000
publish_rate = 1000000000.0
publish_burst = 1000000000

{session}
[[channel]]
match = "bench*"
client_publish = true
"""


class Unavailable(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_listening(port: int, proc: subprocess.Popen[bytes] | None, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"server exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise BenchError(f"nothing listens on port {port} after {timeout:.0f} s")


@dataclass
class Spawned:
    target: Target
    process: subprocess.Popen[bytes] | None
    tmp: tempfile.TemporaryDirectory[str]
    pidfile: Path | None = None
    log: Path = field(default_factory=Path)

    def stop(self) -> None:
        if self.pidfile is not None:  # nginx daemonizes: stop its master by the pid it wrote
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(self.pidfile.read_text()), signal.SIGQUIT)
                for _ in range(100):
                    if not self.pidfile.exists():
                        break
                    time.sleep(0.05)
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.tmp.cleanup()


def spawn(
    name: str,
    cpu: str | None,
    orbiter_args: tuple[str, ...] = (),
    baseline: str | None = None,
    write_delay: float = 0.005,
    orbiter_config: str = "",
) -> Spawned:
    """Start server ``name`` (one of :data:`SPAWNABLE`) on a free port, pinned to ``cpu``.

    ``orbiter-before`` is orbiter run from the source tree ``baseline`` (say a
    ``git worktree`` of an older commit), to measure a change side by side.
    ``orbiter_config`` is TOML appended to the spawned orbiters' config.
    """
    if name not in SPAWNABLE:
        raise BenchError(f"unknown server {name!r}; known: {', '.join(SPAWNABLE)}")
    set_nofile_limit()
    port = free_port()
    tmp = tempfile.TemporaryDirectory(prefix=f"orbiter-bench-{name}-")
    pin = ["taskset", "-c", cpu] if cpu is not None and shutil.which("taskset") else []
    log = Path(tmp.name) / "server.log"
    pidfile = None
    env = None
    if name == "orbiter-before":
        if baseline is None or not (Path(baseline) / "orbiter" / "__init__.py").exists():
            raise Unavailable("orbiter-before needs --baseline DIR, a source tree of orbiter")
        env = {**os.environ, "PYTHONPATH": str(Path(baseline).resolve())}
    if name.startswith("orbiter"):
        conf = Path(tmp.name) / "orbiter.toml"
        # The baseline may predate session.write_delay.
        session = "" if name == "orbiter-before" else f"[session]\nwrite_delay = {write_delay}\n"
        conf.write_text(BENCH_CONFIG.format(session=session) + orbiter_config)
        cmd = [sys.executable, "-m", "orbiter", "serve", "--port", str(port), "--config", str(conf)]
        cmd += ["--log-level", "warning", *orbiter_args]
    elif name == "aiohttp":
        cmd = [sys.executable, "-m", "orbiter.bench.peers.aiohttp_broadcast", str(port)]
    elif name == "websockets":
        try:
            import websockets  # noqa: F401
        except ImportError:
            raise Unavailable("websockets is not installed (pip install websockets)") from None
        cmd = [sys.executable, "-m", "orbiter.bench.peers.websockets_broadcast", str(port)]
    elif name == "socketio":
        try:
            import socketio  # noqa: F401
        except ImportError:
            raise Unavailable(
                "python-socketio is not installed (pip install -e '.[bench]')"
            ) from None
        cmd = [sys.executable, "-m", "orbiter.bench.peers.socketio_broadcast", str(port)]
    elif name == "node-ws":
        node = shutil.which("node")
        if node is None or not (PEERS_DIR / "node_modules" / "ws").exists():
            raise Unavailable(f"node ws is not installed (cd {PEERS_DIR} && npm install ws@8)")
        cmd = [node, str(PEERS_DIR / "ws_broadcast.js"), str(port)]
    else:
        nginx = shutil.which("nginx") or (
            "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
        )
        if nginx is None or not Path("/usr/lib/nginx/modules/ngx_nchan_module.so").exists():
            raise Unavailable(
                "nginx with nchan is not installed (apt-get install libnginx-mod-nchan)"
            )
        conf_text = (PEERS_DIR / "nchan.conf").read_text()
        conf_text = conf_text.replace("@WORKERS@", name[-1]).replace("@PORT@", str(port))
        conf_text = conf_text.replace("@DIR@", tmp.name)
        conf = Path(tmp.name) / "nginx.conf"
        conf.write_text(conf_text)
        pidfile = Path(tmp.name) / "nginx.pid"
        # Two workers get both cores, as nginx would be deployed; one worker gets one.
        pin = pin if name == "nchan-1" else []
        cmd = [nginx, "-c", str(conf), "-p", tmp.name]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*pin, *cmd], stdout=out, stderr=subprocess.STDOUT, cwd=tmp.name, env=env
        )
    if pidfile is not None:
        proc.wait(10)
        if proc.returncode != 0:
            raise BenchError(f"nginx failed to start: {log.read_text()}")
        _wait_listening(port, None)
        time.sleep(0.5)  # the workers start after the master listens
        pid = int(pidfile.read_text())
        spawned = Spawned(
            Target(name, "nchan", f"http://127.0.0.1:{port}", pid), None, tmp, pidfile, log
        )
    else:
        try:
            _wait_listening(port, proc)
        except BenchError:
            proc.kill()
            proc.wait()
            raise BenchError(f"{name} did not start: {log.read_text()[-2000:]}") from None
        spawned = Spawned(
            Target(name, SPAWNABLE[name], f"http://127.0.0.1:{port}", proc.pid),
            proc,
            tmp,
            None,
            log,
        )
    return spawned
