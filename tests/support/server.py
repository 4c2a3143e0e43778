"""Runs a real ``orbiter serve`` process for end-to-end tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

_LISTENING = re.compile(r"listening on (http://\S+)")


class RunningServer:
    """An ``orbiter serve`` child process on a free port, with its log captured.

    Each server keeps its history in a data directory of its own (removed when it
    stops), unless ``args`` name one (``--data-dir``: a test that restarts a server
    on the same history). ``in_own_dir`` runs it in its temporary directory without
    ``--data-dir``, as a user would run it (``./orbiter-data`` there). ``preexec``
    runs in the child before orbiter starts (a resource limit, say).
    """

    def __init__(
        self,
        config_toml: str | None = None,
        *,
        args: tuple[str, ...] = (),
        preexec: Callable[[], None] | None = None,
        in_own_dir: bool = False,
    ) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="orbiter-test-")
        #: The server's temporary directory (removed when it stops).
        self.dir = Path(self._dir.name)
        cmd = [sys.executable, "-m", "orbiter", "serve", "--port", "0", *args]
        if "--data-dir" not in args and not in_own_dir:
            cmd += ["--data-dir", str(self.dir / "data")]
        if config_toml is not None:
            path = Path(self._dir.name) / "orbiter.toml"
            path.write_text(config_toml)
            cmd += ["--config", str(path)]
        self.process = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=preexec,
            cwd=self.dir if in_own_dir else None,
        )
        self.lines: list[str] = []
        self._found = threading.Event()
        self.url = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._found.wait(20):
            self.stop()
            raise RuntimeError("orbiter serve did not start:\n" + self.log)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            match = _LISTENING.search(line)
            if match and not self.url:
                self.url = match.group(1)
                self._found.set()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/connection/websocket"

    def rss_bytes(self) -> int:
        """The server process's resident memory now (Linux ``/proc``)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024

    def wait_for_log(self, text: str, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log:
                return True
            time.sleep(0.02)
        return False

    def wait_listening(self, count: int, timeout: float = 20.0) -> None:
        """Wait until ``count`` processes (``--workers``) say they listen; fail if they do not."""
        deadline = time.monotonic() + timeout
        while self.log.count("listening on") < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.log.count("listening on") >= count, self.log

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
        # A process it left behind may hold the pipe open: closing it under the reader
        # thread's read would wait for that read, forever.
        if self.process.stdout is not None and not self._reader.is_alive():
            self.process.stdout.close()
        self._dir.cleanup()
        return self.process.returncode


def serve_to_its_end(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """``orbiter serve --port 0 ARGS`` run until it stops by itself, its output captured:
    for a start-up that must fail (its exit code and the line saying why)."""
    return subprocess.run(
        [sys.executable, "-m", "orbiter", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
