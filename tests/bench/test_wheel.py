"""``orbiter bench`` from a built wheel, installed into a fresh virtualenv.

The bench reads files that are not Python at run time (``loadgen.c``, which
it compiles, and the peers' configs and scripts); a source checkout has them
whatever ``pyproject.toml`` says, an installed wheel only if the package data
lists them. So this builds the wheel with pip, installs it into a new
virtualenv (no system site-packages; dependencies from the package index),
and runs a tiny preset from outside the repository, with the load generator
compiled into a private cache directory rather than into site-packages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.skipif(
        shutil.which("gcc") is None, reason="needs gcc (scripts/system-packages installs it)"
    ),
    pytest.mark.timeout(180),
]


def _run(*cmd: str, cwd: Path, env: dict[str, str], timeout: float = 120) -> str:
    result = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} exited {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result.stdout


def test_bench_runs_from_an_installed_wheel(tmp_path: Path) -> None:
    # Build from a copy, so that setuptools' build/ and egg-info stay out of the checkout.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "orbiter", src / "orbiter", ignore=shutil.ignore_patterns("__pycache__", "*.so")
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")

    dist = tmp_path / "dist"
    build = ["wheel", "--no-deps", "-q", "-w", str(dist), str(src)]
    _run(sys.executable, "-m", "pip", *build, cwd=tmp_path, env=env)
    (wheel,) = dist.glob("orbiter-*.whl")

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", str(venv), cwd=tmp_path, env=env)
    python = str(venv / "bin" / "python")
    _run(python, "-m", "pip", "install", "-q", str(wheel), cwd=tmp_path, env=env, timeout=150)

    work = tmp_path / "work"
    work.mkdir()
    where = _run(python, "-c", "import orbiter; print(orbiter.__file__)", cwd=work, env=env)
    assert Path(where.strip()).is_relative_to(venv), where

    # The console script the wheel installs; a tiny fanout against a spawned orbiter.
    tiny = ["--subscribers", "10", "--messages", "50", "--timeout", "30", "--no-pin"]
    bench = [str(venv / "bin" / "orbiter"), "bench", "fanout", "--spawn", "orbiter", *tiny]
    out = _run(*bench, cwd=work, env=env)
    assert "wrote bench-result.json" in out
    report = orjson.loads((work / "bench-result.json").read_bytes())
    (result,) = report["runs"]["orbiter"]
    assert result["subscribers_failed"] == 0
    assert result["deliveries"] == result["expected_deliveries"] == 500
    assert result["lost"] == result["duplicates"] == 0
    # The load generator was compiled into the cache, not into the installed package.
    assert list((tmp_path / "cache" / "orbiter-bench").glob("loadgen-*"))
