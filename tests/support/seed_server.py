"""Runs ``python -m orbiter --config=FILE``: the seeds' own command line, for end-to-end tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

_LISTENING = re.compile(r"listening on http://(\S+):(\d+)")


class SeedServer:
    """``python -m orbiter --config=chat.ini``, exactly the seed's command."""

    def __init__(self, config_path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orbiter", f"--config={config_path}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            cwd=config_path.parent,  # its ./orbiter-data goes beside the config, not here
        )
        self.lines: list[str] = []
        self.port = 0
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(20):
            self.stop()
            raise RuntimeError("orbiter did not start:\n" + "".join(self.lines))

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            match = _LISTENING.search(line)
            if match and not self.port:
                self.port = int(match.group(2))
                self._ready.set()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
