"""``python -m orbiter.bench.live`` runs end to end (tiny numbers) and writes its JSON."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson


def test_the_live_bench_measures_every_kind(tmp_path: Path) -> None:
    out = tmp_path / "live.json"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "orbiter.bench.live", "--clients", "2", "--calls", "20"),
            *("--repeat", "1", "--server-cpu", "", "--app-cpu", "", "--loadgen-cpu", "-1"),
            *("--out", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = orjson.loads(out.read_bytes())
    assert set(results) == {"call", "bounce", "rpc"}
    for row in results.values():
        assert row["calls"] == 40
        assert row["calls_per_second"] > 0
        assert 0 < row["p50_ms"] <= row["p99_ms"]
    assert "calls/s" in done.stdout
