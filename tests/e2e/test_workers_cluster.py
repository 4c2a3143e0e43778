"""``orbiter cluster N``: N nodes, a private Redis and a real nginx in front, on one machine.

Clients through nginx and clients on each node directly share one channel;
the stats seen through nginx count both nodes; SIGTERM stops nginx, the
nodes and the Redis.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from orbiter import AsyncClient
from orbiter.ports import free_port
from tests.support.wsclient import NativeClient

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
_READY = re.compile(r"cluster of (\d+) nodes through Redis at \S+: nginx on (\S+) in front of (.*)")
_PIDS = re.compile(r"\(pid (\d+)\)")

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt install nginx)")


class _Cluster:
    def __init__(self, port: int, data_dir: Path) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orbiter",
                "cluster",
                "2",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = pattern.search(self.log)
            if match:
                return match
            time.sleep(0.05)
        raise AssertionError(f"no {pattern.pattern!r} in:\n{self.log}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
        return self.process.returncode


def _children(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc)."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            if ppid == pid:
                found.add(int(entry.name))
    return found | {g for c in found for g in _children(c)}


async def test_two_nodes_behind_nginx_share_a_channel_and_stop_together(tmp_path: Path) -> None:
    port = free_port()
    cluster = _Cluster(port, tmp_path)
    clients: list[NativeClient] = []
    try:
        ready = cluster.wait_for(_READY)
        front = f"http://127.0.0.1:{port}"
        assert ready.group(2) == f"http://127.0.0.1:{port}"
        nodes = ready.group(3).strip().split(", ")
        assert len(nodes) == 2
        processes = _children(cluster.process.pid)
        assert len(processes) >= 4  # two nodes, redis-server, nginx (and its worker)
        front_ws = front.replace("http", "ws") + "/connection/websocket"
        for url in [front_ws, front_ws] + [
            n.replace("http", "ws") + "/connection/websocket" for n in nodes
        ]:
            client = await NativeClient.open(url)
            await client.call("subscribe", channel="room")
            clients.append(client)
        async with AsyncClient(front) as api:
            stats = await api.stats()
            assert stats["cluster"]["nodes"] == 2
            assert stats["cluster"]["answered"] == 2
            assert (await api.channels())["room"] == 4
            for i in range(5):
                await api.publish("room", f"m{i}")
        for client in clients:
            got = [(await client.next_push())["data"] for _ in range(5)]
            assert got == [f"m{i}" for i in range(5)]
    finally:
        for client in clients:
            await client.close()
        code = cluster.stop()
    assert code == 0, cluster.log
    _assert_gone(processes, cluster.log)


def _assert_gone(pids: set[int], log: str) -> None:
    still = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    assert still == [], f"still running after the stop: {still}\n{log}"


async def _post(url: str, source: str, body: bytes = b"") -> tuple[int, str]:
    """POST from the client address ``source`` (a new connection from it)."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http, http.post(url, data=body) as r:
        return r.status, await r.text()


async def test_a_sockjs_session_meets_its_node_whatever_address_each_request_comes_from(
    tmp_path: Path,
) -> None:
    """nginx routes a SockJS session's requests by its id: sent from eight client addresses
    (which ``hash $remote_addr`` would spread over both nodes), every one reaches the node
    holding the session."""
    port = free_port()
    cluster = _Cluster(port, tmp_path)
    try:
        cluster.wait_for(_READY)
        front = f"http://127.0.0.1:{port}"
        session = f"{front}/sockjs/000/{uuid.uuid4()}"
        sources = [f"127.0.{k}.1" for k in range(1, 9)]
        assert await _post(session + "/xhr", sources[0]) == (200, "o\n")
        frames: list[str] = []

        async def command(source: str, **fields: object) -> None:
            body = json.dumps([json.dumps(fields)]).encode()
            status, _ = await _post(session + "/xhr_send", source, body)
            assert status == 204  # a node without the session would answer 404

        async def poll(source: str) -> list[dict[str, object]]:
            status, frame = await _post(session + "/xhr", source)
            assert status == 200
            frames.append(frame)
            assert frame.startswith("a"), frames  # "o": another node opened a new session
            return [json.loads(m) for m in json.loads(frame[1:])]

        await command(sources[1], id=1, op="connect")
        assert "client" in (await poll(sources[2]))[0]["result"]  # type: ignore[operator]
        await command(sources[3], id=2, op="subscribe", channel="room")
        assert (await poll(sources[4]))[0]["id"] == 2
        async with AsyncClient(front) as api:
            await api.publish("room", "to the session")
        pushes = await poll(sources[5])
        assert [p["data"] for p in pushes] == ["to the session"]
        await command(sources[6], id=3, op="unsubscribe", channel="room")
        assert (await poll(sources[7]))[0]["id"] == 3
    finally:
        cluster.stop()
