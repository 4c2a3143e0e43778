"""A real ``redis-server`` for the Redis engine's tests, on a free 127.0.0.1 port.

Started without persistence (``--save '' --appendonly no``), in its own
directory, and stopped by its PID: never the machine's own Redis. It can be
stopped and started again on the same port, as a Redis that restarts and
forgot everything.
"""

from __future__ import annotations

import itertools
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

from orbiter.lifeline import ending_with_this_process
from orbiter.ports import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """One ``redis-server`` process; :attr:`url` names it for the engine."""

    def __init__(self) -> None:
        if shutil.which(REDIS_SERVER) is None:
            raise RuntimeError("redis-server is not installed (scripts/system-packages does it)")
        self._dir = tempfile.TemporaryDirectory(prefix="orbiter-redis-")
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it (again) on its port; returns once it answers."""
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir.name,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Gone with a pytest killed mid-run (start it from the main thread: see lifeline).
            preexec_fn=ending_with_this_process(),
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._answers():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the process (by its PID), and wait for it."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait(10)

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One ``redis-server`` for the session's tests (each test uses its own key prefix)."""
    server = RedisServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def second_redis_server() -> Iterator[RedisServer]:
    """Another ``redis-server``, for channels sharded over two."""
    server = RedisServer()
    yield server
    server.close()


@pytest.fixture
def redis_prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix of this test's own, so tests sharing a Redis never meet."""
    return f"t{next(_PREFIXES)}"


_PREFIXES = itertools.count()
