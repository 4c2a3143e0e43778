"""``/health/live``, ``/health/ready`` and ``orbiter status`` against real servers: the
embedded default, a Redis engine whose redis-server is stopped and started again, a dev
proxy owning ``/``; and the SQLite engine's check with its writer thread gone."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from orbiter.engine.sqlite import SqliteBroker
from orbiter.version import __version__
from tests.support.redis_server import RedisServer
from tests.support.server import RunningServer


async def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as answer:
        return answer.status, orjson.loads(await answer.read())


def _status(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orbiter", "status", "--url", url, *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


async def _wait_ready(url: str, want: int, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, body = await _get(url + "/health/ready")
        if status == want or time.monotonic() > deadline:
            assert status == want, body
            return body
        await asyncio.sleep(0.1)


async def test_live_and_ready_on_the_embedded_default() -> None:
    server = RunningServer('[server]\napi_key = "k"\n')
    try:
        status, body = await _get(server.url + "/health/live")
        assert (status, body["status"], body["version"]) == (200, "ok", __version__)
        # No API key needed for either (a load balancer's probe has none) ...
        status, body = await _get(server.url + "/health/ready")
        assert status == 200, body
        assert body["status"] == "ready"
        assert body["checks"] == {"listeners": "ok", "engine": "ok"}
        assert body["engine"] == "sqlite"
        # ... while the API still wants it.
        status, _ = await _get(server.url + "/api/stats")
        assert status == 401
        done = _status(server.url, "--api-key", "k")
        assert done.returncode == 0, done.stderr
        assert f"orbiter {__version__} at {server.url}: ready" in done.stdout
        assert "engine: sqlite, ok" in done.stdout
        assert "connections: " in done.stdout
        refused = _status(server.url)  # no key: the health part still, and why no stats
        assert "ready" in refused.stdout
        assert "401" in refused.stdout
    finally:
        server.stop()


async def test_ready_is_503_while_redis_is_down() -> None:
    redis = RedisServer()
    server = RunningServer(args=("--engine", redis.url))
    try:
        body = await _wait_ready(server.url, 200)
        assert body["engine"] == "redis"
        redis.stop()
        body = await _wait_ready(server.url, 503)
        assert body["status"] == "not ready"
        assert body["reason"].startswith("engine: Redis")
        assert body["checks"]["engine"].startswith("Redis")
        assert "127.0.0.1" not in body["reason"]  # the URL (which may hold a password) is not said
        status, _ = await _get(server.url + "/health/live")
        assert status == 200  # the process is fine: no restart wanted
        done = _status(server.url)
        assert done.returncode == 1
        assert "not ready" in done.stdout
        redis.start()
        await _wait_ready(server.url, 200, timeout=20)
        assert _status(server.url).returncode == 0
    finally:
        server.stop()
        redis.stop()


async def test_health_is_the_nodes_own_behind_the_dev_proxy() -> None:
    server = RunningServer(
        '[dev_proxy]\nenabled = true\n[[dev_proxy.route]]\nprefix = "/"\n'
        'to = "http://127.0.0.1:9"\n'
    )
    try:
        status, body = await _get(server.url + "/health/ready")
        assert (status, body["status"]) == (200, "ready")
    finally:
        server.stop()


def test_status_without_a_server_says_so() -> None:
    done = _status("http://127.0.0.1:9")
    assert done.returncode == 1
    assert "no answer" in done.stdout


async def test_sqlite_check_names_a_stopped_writer(tmp_path: Path) -> None:
    broker = SqliteBroker(tmp_path / "orbiter.sqlite3")
    await broker.start()
    try:
        assert await broker.check() is None
        writer = broker._writer
        assert writer is not None
        await writer.stop()  # the thread ends, as if it had died
        assert await broker.check() == "the SQLite writer thread has stopped"
    finally:
        broker._writer = None
        broker._closed = True
        if broker._reader is not None:
            broker._reader.shutdown()
    assert await broker.check() == "the SQLite data file is not open"


@pytest.mark.parametrize("path", ["/health/live", "/health/ready"])
async def test_health_routes_answer_get_only(path: str) -> None:
    server = RunningServer(args=("--engine", "memory"))
    try:
        async with aiohttp.ClientSession() as http, http.post(server.url + path) as answer:
            assert answer.status == 405
    finally:
        server.stop()
