"""Where ``orbiter serve`` keeps history by default, and a damaged data file at start."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from orbiter import AsyncClient
from tests.support.server import RunningServer


async def test_serve_keeps_history_in_orbiter_data_where_it_is_started() -> None:
    server = RunningServer(in_own_dir=True)
    try:
        data_file = server.dir / "orbiter-data" / "orbiter.sqlite3"
        assert server.wait_for_log(f"channel history in {data_file.resolve()}")
        async with AsyncClient(server.url) as api:
            await api.publish("start:x", "kept")
        with sqlite3.connect(data_file) as conn:
            rows = conn.execute("SELECT data FROM publications").fetchall()
        conn.close()
        assert rows == [('"kept"',)]
    finally:
        server.stop()


def test_the_memory_engine_writes_nothing(tmp_path: Path) -> None:
    server = RunningServer(in_own_dir=True, args=("--engine", "memory"))
    try:
        assert server.wait_for_log("kept in memory only")
        assert not (server.dir / "orbiter-data").exists()
    finally:
        server.stop()


def test_a_damaged_data_file_stops_start_up_with_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "orbiter.sqlite3").write_bytes(b"\x00garbage" * 4096)
    done = subprocess.run(
        [sys.executable, "-m", "orbiter", "serve", "--port", "0", "--data-dir", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "orbiter: cannot start: the data file" in done.stderr
    assert str(tmp_path / "orbiter.sqlite3") in done.stderr
    assert "damaged" in done.stderr
    assert "Traceback" not in done.stderr


def test_orbiter_compact_vacuums_a_stopped_servers_file(tmp_path: Path) -> None:
    server = RunningServer(args=("--data-dir", str(tmp_path)))
    try:
        running = subprocess.run(
            [sys.executable, "-m", "orbiter", "compact", "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert running.returncode == 1
        assert "in use by another orbiter process" in running.stderr
    finally:
        server.stop()
    done = subprocess.run(
        [sys.executable, "-m", "orbiter", "compact", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "bytes ->" in done.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "orbiter", "compact", "--data-dir", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode == 1
    assert "there is no data file" in missing.stderr
