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
from orbiter.ports import free_port, free_ports

PEERS_DIR = Path(__file__).resolve().parent / "peers"
#: name -> flavor of every server ``--spawn`` knows.
SPAWNABLE = {
    "orbiter": "orbiter",
    "orbiter-before": "orbiter",
    "orbiter-memory": "orbiter",
    "orbiter-pure": "orbiter",
    "orbiter-sqlite": "orbiter",
    "aiohttp": "broadcast",
    "websockets": "broadcast-ws",
    "node-ws": "broadcast",
    "nchan-1": "nchan",
    "nchan-2": "nchan",
    "socketio": "socketio",
    "pushpin": "pushpin",
    "uvloop-raw": "broadcast",
    "uvloop-raw-native": "orbiter",
    "uvloop-raw-batch": "broadcast",
    "uvloop-raw-batch-256": "broadcast",
}

#: Pushpin's handler sends at most ``message_rate`` messages per second and
#: queues ``message_hwm`` beyond that (its defaults: 2,500 and 25,000, which
#: would make a fan-out benchmark measure the limit); raised for the bench.
PUSHPIN_MESSAGE_RATE = 100_000_000
PUSHPIN_MESSAGE_HWM = 100_000_000

BENCH_CONFIG = """\
[limits]
max_http_body = 16777216
max_connections = 1000000
max_connections_per_ip = 1000000
publish_rate = 1000000000.0
publish_burst = 1000000000
{limits}
{session}
[[channel]]
match = "bench*"
client_publish = true
"""


class Unavailable(Exception):
    pass


def _wait_listening(port: int, proc: subprocess.Popen[bytes] | None, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"server exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise BenchError(f"nothing listens on port {port} after {timeout:.0f} s")


def _wait_pushpin_routes(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Until a WebSocket handshake through Pushpin reaches the origin (answers 101).

    Pushpin's front (condure) listens before its proxy has connected to the
    other processes; a client that came then would get 502 Bad Gateway.
    """
    request = (
        f"GET /ws?channel=orbiter-bench-probe HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    deadline = time.monotonic() + timeout
    status = b"no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"pushpin exited with {proc.returncode} while starting")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            s.sendall(request)
            answer = b""
            while b"\r\n" not in answer and len(answer) < 4096:
                chunk = s.recv(4096)
                if not chunk:
                    break
                answer += chunk
            status = answer.partition(b"\r\n")[0] or b"the connection closed"
            if status.split(b" ")[1:2] == [b"101"]:
                return
        time.sleep(0.1)
    raise BenchError(f"pushpin does not reach its origin after {timeout:.0f} s: {status!r}")


@dataclass
class Spawned:
    target: Target
    process: subprocess.Popen[bytes] | None
    tmp: tempfile.TemporaryDirectory[str]
    pidfile: Path | None = None
    log: Path = field(default_factory=Path)
    #: Helper processes (Pushpin's origin) stopped after the server.
    helpers: list[subprocess.Popen[bytes]] = field(default_factory=list)

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
        for helper in self.helpers:
            helper.terminate()
            try:
                helper.wait(10)
            except subprocess.TimeoutExpired:
                helper.kill()
                helper.wait()
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
    helpers: list[subprocess.Popen[bytes]] = []
    pub_url = None
    if name == "orbiter-before":
        if baseline is None or not (Path(baseline) / "orbiter" / "__init__.py").exists():
            raise Unavailable("orbiter-before needs --baseline DIR, a source tree of orbiter")
        env = {**os.environ, "PYTHONPATH": str(Path(baseline).resolve())}
    if name == "orbiter-pure":  # this tree's pure-Python build, beside the compiled one
        env = {**os.environ, "ORBITER_PURE": "1"}
    if name.startswith("orbiter"):
        conf = Path(tmp.name) / "orbiter.toml"
        session = f"[session]\nwrite_delay = {write_delay}\n"
        # One load generator is many clients' worth of frames; the baseline may
        # predate limits.frame_rate (then it has no such limit).
        limits = "" if name == "orbiter-before" else "frame_rate = 1000000000\n"
        conf.write_text(BENCH_CONFIG.format(session=session, limits=limits) + orbiter_config)
        cmd = [sys.executable, "-m", "orbiter", "serve", "--port", str(port), "--config", str(conf)]
        cmd += ["--log-level", "warning", *orbiter_args]
        if name in ("orbiter-memory", "orbiter-pure"):  # the memory engine, beside the default
            cmd += ["--engine", "memory"]
        elif name == "orbiter-sqlite":  # the embedded default, whatever --orbiter-arg names
            cmd += ["--engine", "sqlite"]
    elif name == "aiohttp":
        cmd = [sys.executable, "-m", "orbiter.bench.peers.aiohttp_broadcast", str(port)]
    elif name == "uvloop-raw":
        cmd = [sys.executable, "-m", "orbiter.bench.peers.raw_broadcast", str(port)]
    elif name.startswith("uvloop-raw-batch"):  # -256: passes of 256 subscribers, as orbiter's
        step = name.removeprefix("uvloop-raw-batch").lstrip("-") or "0"
        cmd = [
            sys.executable,
            "-m",
            "orbiter.bench.peers.raw_broadcast",
            str(port),
            "--batch",
            step,
        ]
    elif name == "uvloop-raw-native":
        cmd = [sys.executable, "-m", "orbiter.bench.peers.raw_native", str(port)]
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
    elif name == "pushpin":
        cmd, pub_url, helpers = _pushpin(Path(tmp.name), port, pin)
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
        try:
            # In the temporary directory: orbiter's data directory (./orbiter-data, the
            # SQLite engine's) is the run's own and goes with it.
            proc = subprocess.Popen(
                [*pin, *cmd], stdout=out, stderr=subprocess.STDOUT, cwd=tmp.name, env=env
            )
        except BaseException:
            _stop_helpers(helpers)
            raise
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
            if pub_url is not None:
                _wait_listening(Target(name, name, pub_url).pub_host_port[1], proc)
            if name == "pushpin":
                _wait_pushpin_routes(port, proc)
        except BenchError:
            proc.kill()
            proc.wait()
            _stop_helpers(helpers)
            raise BenchError(f"{name} did not start: {log.read_text()[-2000:]}") from None
        spawned = Spawned(
            Target(name, SPAWNABLE[name], f"http://127.0.0.1:{port}", proc.pid, pub_url),
            proc,
            tmp,
            None,
            log,
            helpers,
        )
    return spawned


def _stop_helpers(helpers: list[subprocess.Popen[bytes]]) -> None:
    for helper in helpers:
        helper.kill()
        helper.wait()


def _pushpin(
    tmp: Path, port: int, pin: list[str]
) -> tuple[list[str], str, list[subprocess.Popen[bytes]]]:
    """Pushpin's command line, its publish URL, and its origin (started here).

    Pushpin runs from its own config in ``tmp`` (``peers/pushpin.conf``) on
    free ports, with the WebSocket-over-HTTP origin
    (``peers/pushpin_origin.py``) on another; its runner starts condure,
    zurl, pushpin-proxy and pushpin-handler as its children.
    """
    pushpin = shutil.which("pushpin")
    if pushpin is None or shutil.which("condure") is None or shutil.which("zurl") is None:
        raise Unavailable("Pushpin is not installed (apt-get install pushpin)")
    origin_port, control, pull, sub, command = free_ports(5, taken=frozenset({port}))
    values = {
        "@DIR@": str(tmp),
        "@PORT@": str(port),
        "@CONTROL_PORT@": str(control),
        "@PULL_PORT@": str(pull),
        "@SUB_PORT@": str(sub),
        "@COMMAND_PORT@": str(command),
        "@MESSAGE_RATE@": str(PUSHPIN_MESSAGE_RATE),
        "@MESSAGE_HWM@": str(PUSHPIN_MESSAGE_HWM),
    }
    text = (PEERS_DIR / "pushpin.conf").read_text()
    for key, value in values.items():
        text = text.replace(key, value)
    (tmp / "run").mkdir()
    (tmp / "pushpin.conf").write_text(text)
    (tmp / "routes").write_text(f"* 127.0.0.1:{origin_port},over_http\n")
    origin_cmd = [sys.executable, "-m", "orbiter.bench.peers.pushpin_origin", str(origin_port)]
    with (tmp / "origin.log").open("wb") as out:
        origin = subprocess.Popen([*pin, *origin_cmd], stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_listening(origin_port, origin)
    except BenchError:
        _stop_helpers([origin])
        log = (tmp / "origin.log").read_text()
        raise BenchError(f"the Pushpin origin did not start: {log}") from None
    cmd = [pushpin, "--config", str(tmp / "pushpin.conf"), "--merge-output"]
    return cmd, f"http://127.0.0.1:{control}", [origin]
