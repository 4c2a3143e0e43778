"""``orbiter serve --workers N``: N processes on one port, sharing channels through Redis.

**Which engine.** The workers are nodes of one cluster, so they need the
Redis engine: a configured one (``--engine redis://...`` or ``[engine] kind =
"redis"``) is used as it is. With no engine configured, a private
``redis-server`` is started for them (:class:`PrivateRedis`: a Unix socket in
a temporary directory, its append-only file under the data directory, so
history survives a restart as on the embedded default) and stopped with the
server; without the binary, or with the SQLite or memory engine configured
explicitly (one process's engines), :func:`engine_for_workers` refuses with
a message saying what to install or configure.

**One port.** The parent reserves the HTTP port (a socket bound with
``SO_REUSEPORT`` and never listening, so that ``--port 0`` gives every
worker the same free port) and forks the workers; each listens on that port
with ``SO_REUSEPORT`` and the kernel spreads new connections over them. The
other ports (the STOMP TCP listener, pyorbited's event port) are served by
worker 0 only: STOMP queues and transactions live in one process, and what a
connection there publishes reaches every worker's subscribers through Redis.

**Signals and deaths.** SIGTERM or SIGINT to the parent stops every worker
gracefully (each closes its sessions with a reason), then the private Redis.
A worker that dies is logged and started again after
:data:`RESTART_DELAY`; past :data:`MAX_RESTARTS` deaths within
:data:`RESTART_WINDOW` seconds, or when a worker cannot start at all (a
config or an address it cannot use), the whole server stops.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path

from orbiter.config.settings import Config
from orbiter.lifeline import end_with_parent, ending_with_this_process
from orbiter.logs import JsonFormatter

log = logging.getLogger("orbiter.workers")

#: A worker's exit status when it could not start (printed why): the server stops.
EXIT_CANNOT_START = 3
#: Seconds before a worker that died is started again.
RESTART_DELAY = 1.0
#: Deaths within :data:`RESTART_WINDOW` seconds after which the server stops instead.
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
#: Seconds a worker has to stop after SIGTERM before it is killed.
STOP_TIMEOUT = 15.0


class WorkersRefused(Exception):
    """``--workers N`` cannot run with this configuration; the message says what to do."""


def engine_for_workers(config: Config, workers: int, *, engine_configured: bool) -> str | None:
    """The engine the workers share: a configured Redis URL, or None for a private Redis.

    :class:`WorkersRefused` when the configured engine serves one process only, or
    when none is configured and no ``redis-server`` is installed.
    """
    kind = config.engine.kind
    if kind == "redis":
        return config.engine.url
    if engine_configured:
        why = (
            "the SQLite engine has one writer per data file"
            if kind == "sqlite"
            else "the memory engine keeps channels in one process"
        )
        raise WorkersRefused(
            f"--workers {workers} needs an engine shared by its processes, and {why}: "
            'name a Redis with --engine redis://HOST:PORT/DB (or [engine] kind = "redis"), '
            "or configure no engine to have a private redis-server started"
        )
    if shutil.which("redis-server") is None:
        raise WorkersRefused(
            f"--workers {workers} shares channels between its processes through Redis, and "
            "no redis-server is on PATH: install it (apt install redis-server) to have a "
            "private one started, or name a Redis with --engine redis://HOST:PORT/DB"
        )
    return None


class PrivateRedis:
    """A ``redis-server`` of this server's own, on a Unix socket, stopped with it."""

    def __init__(self, data_dir: str, *, sync: str = "normal") -> None:
        self._socket_dir = tempfile.mkdtemp(prefix="orbiter-redis-")
        self.socket = os.path.join(self._socket_dir, "redis.sock")
        #: Where its append-only file is kept (history survives a restart).
        self.dir = Path(data_dir) / "redis"
        self._sync = "always" if sync == "full" else "everysec"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}?db=0"

    def start(self, timeout: float = 15.0) -> None:
        """Start it; returns once it answers PING, else :class:`WorkersRefused` saying why."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise WorkersRefused("redis-server is not on PATH (apt install redis-server)")
        self.dir.mkdir(parents=True, exist_ok=True)
        options = {
            "port": "0",
            "unixsocket": self.socket,
            "unixsocketperm": "700",
            "dir": str(self.dir.resolve()),
            "save": "",
            "appendonly": "yes",
            "appendfsync": self._sync,
            "maxmemory-policy": "noeviction",
            "loglevel": "warning",
        }
        self.process = subprocess.Popen(
            [binary, *(part for name, value in options.items() for part in (f"--{name}", value))],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C reaches it through the server, in order
            preexec_fn=ending_with_this_process(),  # a SIGKILLed server's ends too
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._answers():
                log.info("private redis-server (pid %d) on %s", self.process.pid, self.socket)
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        code = self.process.poll()
        self.stop()
        raise WorkersRefused(
            f"the private redis-server did not start (exit status {code}; its data: {self.dir})"
        )

    def _answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(1.0)
                sock.connect(self.socket)
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM (Redis writes its file and exits), killed if it does not within 10 s."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.info("private redis-server stopped")
        shutil.rmtree(self._socket_dir, ignore_errors=True)


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to a port for workers, with ``SO_REUSEPORT`` and never listening
    (so it takes no connection); with ``port`` 0 the kernel picks one."""
    family, _, _, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


def worker_config(config: Config, index: int, port: int, engine_url: str) -> Config:
    """Worker ``index``'s config: the shared port and Redis; the other ports on worker 0."""
    config = replace(config, port=port, engine=replace(config.engine, kind="redis", url=engine_url))
    if index > 0:
        config = replace(
            config,
            stomp=replace(config.stomp, listen=""),
            pyorbited=replace(config.pyorbited, enabled=False),
        )
    return config


class _WorkerLines(logging.Filter):
    """Says whose each log line is: a ``[worker i, pid p]`` prefix on text lines, ``worker``
    and ``pid`` fields on JSON lines (``[log] format``)."""

    def __init__(self, index: int, fields: bool) -> None:
        super().__init__()
        self._index = index
        self._pid = os.getpid()
        self._fields = fields
        self._prefix = f"[worker {index}, pid {self._pid}] "

    def filter(self, record: logging.LogRecord) -> bool:
        if self._fields:
            record.worker, record.pid = self._index, self._pid
        elif not str(record.msg).startswith(self._prefix):
            record.msg = self._prefix + str(record.msg)
        return True


def _worker_main(config: Config, index: int, parent: int) -> None:
    """A worker process: serve ``config`` on the shared port until SIGTERM or SIGINT, or
    until its parent (pid ``parent``) ends, however it ends (:mod:`orbiter.lifeline`)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's handlers are not ours
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    end_with_parent(parent)
    for handler in logging.getLogger().handlers:  # whatever their format, lines say whose
        handler.addFilter(_WorkerLines(index, isinstance(handler.formatter, JsonFormatter)))
    from orbiter.engine.base import EngineUnavailable
    from orbiter.server import serve
    from orbiter.services.live.host import ElementLoadError

    try:
        serve(config, reuse_port=True)
    except (OSError, EngineUnavailable, ElementLoadError) as exc:
        print(f"orbiter: worker {index} cannot start: {exc}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(EXIT_CANNOT_START)


class Supervisor:
    """Starts the workers, starts again those that die, and stops them all on a signal.

    Worker ``i`` listens on ``ports[i]`` (reserved by the caller with :func:`reserve_port`):
    one port for all (``--workers``), or one each (``orbiter cluster``).
    """

    def __init__(self, config: Config, ports: list[int], engine_url: str) -> None:
        self._config = config
        self._engine_url = engine_url
        self._ports = ports
        self._context = multiprocessing.get_context("fork")
        self._workers: dict[int, BaseProcess] = {}
        self._deaths: list[float] = []
        self._stopping = False

    def _start(self, index: int) -> None:
        config = worker_config(self._config, index, self._ports[index], self._engine_url)
        process = self._context.Process(
            target=_worker_main, args=(config, index, os.getpid()), name=f"orbiter-worker-{index}"
        )
        process.start()
        self._workers[index] = process
        log.info("worker %d started (pid %s)", index, process.pid)

    def _stop_requested(self, signum: int, frame: object) -> None:
        self._stopping = True

    def run(
        self,
        started: Callable[[], None] | None = None,
        check: Callable[[], str | None] | None = None,
        first_stop: Callable[[], None] | None = None,
    ) -> int:
        """Serve until a signal (0) or a worker that cannot start / dies too often (1);
        ``started`` is called once every worker was started, ``check`` twice a second
        (what it returns, if anything, is why the server stops: 1), ``first_stop`` before
        the workers are stopped."""
        previous = {
            sig: signal.signal(sig, self._stop_requested) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            for index in range(len(self._ports)):
                self._start(index)
            if started is not None:
                started()
            return self._watch(check)
        finally:
            if first_stop is not None:
                first_stop()
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stop(self) -> None:
        """Stop serving (as a signal would)."""
        self._stopping = True

    def _watch(self, check: Callable[[], str | None] | None) -> int:
        while not self._stopping:
            failed = check() if check is not None else None
            if failed is not None:
                log.error("%s: stopping the server", failed)
                return 1
            sentinels = {p.sentinel: i for i, p in self._workers.items()}
            for sentinel in wait(list(sentinels), timeout=0.5):
                index = sentinels[sentinel]  # type: ignore[index]
                process = self._workers[index]
                process.join()
                if self._stopping:
                    break
                code = process.exitcode
                if code == EXIT_CANNOT_START:
                    log.error("worker %d could not start: stopping the server", index)
                    return 1
                how = f"signal {-code}" if code is not None and code < 0 else f"status {code}"
                now = time.monotonic()
                self._deaths = [t for t in self._deaths if now - t < RESTART_WINDOW] + [now]
                if len(self._deaths) > MAX_RESTARTS:
                    log.error(
                        "worker %d (pid %s) died (%s), the %dth death within %g s: stopping "
                        "the server",
                        index,
                        process.pid,
                        how,
                        len(self._deaths),
                        RESTART_WINDOW,
                    )
                    return 1
                log.error(
                    "worker %d (pid %s) died (%s); starting it again in %g s",
                    index,
                    process.pid,
                    how,
                    RESTART_DELAY,
                )
                self._sleep(RESTART_DELAY)
                if not self._stopping:
                    self._start(index)
        return 0

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            time.sleep(0.05)

    def _stop_all(self) -> None:
        alive = [p for p in self._workers.values() if p.is_alive()]
        if alive:
            log.info("stopping %d workers", len(alive))
        for process in alive:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in alive:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("worker pid %s did not stop in %g s: killed", process.pid, STOP_TIMEOUT)
                process.kill()
                process.join()


def serve_workers(config: Config, workers: int, *, engine_configured: bool) -> int:
    """Run ``workers`` processes on ``config``'s port; the exit status. :class:`WorkersRefused`
    (before anything started) when the engine cannot be shared."""
    url = engine_for_workers(config, workers, engine_configured=engine_configured)
    private: PrivateRedis | None = None
    if url is None:
        private = PrivateRedis(config.engine.data_dir or ".", sync=config.engine.sync)
        private.start()
        url = private.url
    try:
        log.info("%d workers sharing channels through Redis at %s", workers, url)
        with reserve_port(config.host, config.port) as reserved:
            port = reserved.getsockname()[1]
            return Supervisor(config, [port] * workers, url).run()
    finally:
        if private is not None:
            private.stop()


def workers_main(config: Config, workers: int, *, engine_configured: bool) -> int:
    """``orbiter serve --workers N``: the exit status; a refusal is one line on stderr."""
    if workers < 1:
        print(f"orbiter: --workers must be at least 1, not {workers}", file=sys.stderr)
        return 2
    try:
        return serve_workers(config, workers, engine_configured=engine_configured)
    except WorkersRefused as exc:
        print(f"orbiter: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the port taken
        print(f"orbiter: cannot start: {exc}", file=sys.stderr)
        return 1
