"""An example's processes, run as its README says: started until ready, then stopped."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def started(
    cmd: list[str], cwd: Path, ready: str, env: dict[str, str], timeout: float = 20.0
) -> subprocess.Popen[str]:
    """Start ``cmd`` in ``cwd`` and read its output until a line holds ``ready``
    (AssertionError with what it printed if it exits or ``timeout`` seconds pass)."""
    process = subprocess.Popen(
        cmd,
        cwd=cwd,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        seen.append(line)
        if ready in line:
            return process
        if not line and process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"{cmd} did not start:\n" + "".join(seen))


def stop(*processes: subprocess.Popen[str]) -> None:
    """Stop each of ``processes`` (started here), in the order given."""
    for process in processes:
        process.terminate()
        process.wait(15)
        if process.stdout is not None:
            process.stdout.close()
