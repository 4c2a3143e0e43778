"""A private RabbitMQ node with the STOMP plugin, for the TCP proxy's browser test.

Started from ``rabbitmq-server`` (the script under /usr/lib/rabbitmq/bin itself,
not Debian's /usr/sbin wrapper, which switches to the ``rabbitmq`` user and writes
to /var/log/rabbitmq) in a temporary directory of its own: its own node name,
free AMQP, distribution, STOMP and epmd ports, its own data, log and PID files,
and ``HOME`` there (so its own Erlang cookie). It never meets the machine's
RabbitMQ, if one runs. It also runs its own ``epmd`` (``-start_epmd false``),
so that no epmd daemon outlives it.

Both processes are started in a new session and stopped by PID (and by that
session's process group): never any other process. A missing ``rabbitmq-server``
is an error, not a skip: ``scripts/system-packages`` installs it, as on CI.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orbiter.ports import free_port

#: The first that exists; the plain script runs as any user, root included.
_CANDIDATES = ("/usr/lib/rabbitmq/bin/rabbitmq-server", "/usr/sbin/rabbitmq-server")
#: Bounded wait for the STOMP listener (the node typically takes a few seconds).
START_TIMEOUT = 60.0


def rabbitmq_server_binary() -> str | None:
    for path in _CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("rabbitmq-server")


def _epmd_binary() -> str | None:
    return shutil.which("epmd") or next(
        (str(p) for p in sorted(Path("/usr/lib/erlang").glob("erts-*/bin/epmd"))), None
    )


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _exited(process: subprocess.Popen[bytes], timeout: float) -> bool:
    """Whether the process exits within ``timeout``, without reaping it: while it is an
    unreaped zombie its PID, and so its process group's id, cannot be reused."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                return True
        except ChildProcessError:  # already reaped
            return True
        time.sleep(0.05)
    return False


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    """TERM (then KILL) the process and its own process group (it leads a new session)."""
    if process is None or process.returncode is not None:
        return
    # pgid == pid (start_new_session=True); the leader is not reaped before the last killpg.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    _exited(process, 15.0)
    # What is left of the group (beam if the script's trap did not stop it, its helpers).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


class RabbitMQServer:
    """One private RabbitMQ node; :attr:`stomp_port` is its STOMP listener on 127.0.0.1."""

    def __init__(self) -> None:
        binary = rabbitmq_server_binary()
        if binary is None:
            raise RuntimeError(
                "rabbitmq-server is not installed: run scripts/system-packages (CI installs it)"
            )
        epmd = _epmd_binary()
        if epmd is None:
            raise RuntimeError("epmd (Erlang) is not installed: run scripts/system-packages")
        self._dir = tempfile.TemporaryDirectory(prefix="orbiter-rabbitmq-")
        base = Path(self._dir.name)
        self.node_port = free_port()
        self.dist_port = free_port()
        self.stomp_port = free_port()
        self.epmd_port = free_port()
        self.nodename = f"orbiter-test-{os.getpid()}@localhost"
        self.log = base / "console.log"
        (base / "enabled_plugins").write_text("[rabbitmq_stomp].\n")
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.node_port}\n"
            f"stomp.listeners.tcp.1 = 127.0.0.1:{self.stomp_port}\n"
            "log.console = true\n"
            "log.file = false\n"
        )
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("RABBITMQ_", "ERL_"))
        }
        env.update(
            HOME=str(base),
            ERL_EPMD_PORT=str(self.epmd_port),
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_NODENAME=self.nodename,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.node_port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(base / "mnesia"),
            RABBITMQ_LOG_BASE=str(base / "log"),
            RABBITMQ_PID_FILE=str(base / "rabbitmq.pid"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(base / "enabled_plugins"),
            RABBITMQ_CONFIG_FILE=str(base / "rabbitmq.conf"),
            # No rabbitmq-env.conf of the machine's (/etc/rabbitmq).
            RABBITMQ_CONF_ENV_FILE=str(base / "rabbitmq-env.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(base / "advanced.config"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-start_epmd false",
        )
        self.epmd: subprocess.Popen[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None
        started = time.monotonic()
        try:
            self.epmd = subprocess.Popen(
                [epmd, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            with self.log.open("wb") as log:
                self.process = subprocess.Popen(
                    [binary],
                    env=env,
                    cwd=base,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self._wait_for_stomp()
        except BaseException:
            self.close()
            raise
        #: Seconds from starting the node to its STOMP port accepting connections.
        self.startup_seconds = time.monotonic() - started

    def _wait_for_stomp(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if _listening(self.stomp_port):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        raise RuntimeError(
            f"RabbitMQ's STOMP listener did not come up on 127.0.0.1:{self.stomp_port} "
            f"within {START_TIMEOUT:.0f} s (exit code {self.process.poll()}):\n{tail}"
        )

    def close(self) -> None:
        """Stop the node, then its epmd (each by PID and its own process group)."""
        process, self.process = self.process, None
        _stop(process)
        epmd, self.epmd = self.epmd, None
        _stop(epmd)
        self._dir.cleanup()


@pytest.fixture(scope="module")
def rabbitmq_server() -> Iterator[RabbitMQServer]:
    """A private RabbitMQ node with STOMP, for the module's tests; stopped after them."""
    server = RabbitMQServer()
    yield server
    server.close()
