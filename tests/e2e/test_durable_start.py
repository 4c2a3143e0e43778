"""Where ``orbiter serve`` keeps history by default, and a damaged data file at start."""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson

from orbiter import AsyncClient
from orbiter.config.storage import DATA_FILE, QUEUE_FILE
from orbiter.services.stomp.queue_file import QueueFile, StoredMessage
from tests.support.server import RunningServer


async def test_serve_keeps_history_in_orbiter_data_where_it_is_started() -> None:
    server = RunningServer(in_own_dir=True)
    try:
        data_file = server.dir / "orbiter-data" / "orbiter.sqlite3"
        assert server.wait_for_log(f"channel history in {data_file.resolve()}")
        async with AsyncClient(server.url) as api:
            await api.publish("start:x", "kept")
        with sqlite3.connect(data_file) as conn:
            rows = conn.execute("SELECT rows FROM commits").fetchall()
        conn.close()
        assert [[row[2] for row in orjson.loads(blob)] for (blob,) in rows] == [["kept"]]
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


def _compact(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orbiter", "compact", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_orbiter_compact_vacuums_the_stomp_queue_file_too(tmp_path: Path) -> None:
    """The STOMP queue file (its rows consumed, its pages free) shrinks as the data file
    does, and only while no server holds it; each file compacted is named."""
    server = RunningServer('[stomp]\nlisten = "127.0.0.1:0"\n', args=("--data-dir", str(tmp_path)))
    try:
        assert server.wait_for_log("stomp listening on", 10), server.log
        assert (tmp_path / QUEUE_FILE).exists()
        running = _compact(tmp_path)
        assert running.returncode == 1
        assert "in use by another orbiter process" in running.stderr
    finally:
        server.stop()
    queues = QueueFile(tmp_path / QUEUE_FILE)
    queues.open()
    messages = [
        StoredMessage(key, "/queue/jobs", (), b"x" * 4000, math.inf, "127.0.0.1")
        for key in range(1, 301)
    ]
    queues.write(messages, [])
    queues.write([], [message.key for message in messages])  # consumed: free pages
    held = _compact(tmp_path)  # the queue file alone is in use (as by a server with queues)
    assert held.returncode == 1
    assert f"the queue file {tmp_path / QUEUE_FILE} is in use" in held.stderr
    queues.close()
    before = (tmp_path / QUEUE_FILE).stat().st_size
    assert before > 1_000_000
    done = _compact(tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[1].strip() for line in lines] == [
        str(tmp_path / DATA_FILE),
        str(tmp_path / QUEUE_FILE),
    ]
    after = (tmp_path / QUEUE_FILE).stat().st_size
    assert after < before / 10
    assert lines[1] == f"orbiter: {tmp_path / QUEUE_FILE}: {before:,} bytes -> {after:,} bytes"
    reopened = QueueFile(tmp_path / QUEUE_FILE)
    assert reopened.open() == []  # still an orbiter queue file
    reopened.close()
    (tmp_path / DATA_FILE).unlink()  # only the queue file: it alone is compacted
    alone = _compact(tmp_path)
    assert alone.returncode == 0, alone.stderr
    assert alone.stdout.splitlines() == [
        f"orbiter: {tmp_path / QUEUE_FILE}: {after:,} bytes -> {after:,} bytes"
    ]
