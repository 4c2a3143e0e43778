"""Builds the C load generator (``loadgen.c``) with the machine's gcc, once per source version.

The binary is cached under ``$XDG_CACHE_HOME/orbiter-bench`` (default
``~/.cache``), named by a hash of the source, so an edited source is rebuilt.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "loadgen.c"


class BuildError(Exception):
    pass


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "orbiter-bench"


def loadgen_binary() -> Path:
    """The compiled load generator, building it first if needed."""
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    target = cache_dir() / f"loadgen-{digest}"
    if target.exists():
        return target
    cc = shutil.which(os.environ.get("CC", "gcc"))
    if cc is None:
        raise BuildError("orbiter bench needs gcc (or $CC) to build its load generator")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    result = subprocess.run(
        [cc, "-O2", "-Wall", "-o", str(tmp), str(SOURCE)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise BuildError(f"building {SOURCE.name} failed:\n{result.stderr}")
    tmp.replace(target)
    return target
