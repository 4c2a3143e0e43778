"""``orbiter serve --workers N``: real processes on one port, sharing channels through Redis.

Which worker holds a connection is read from the kernel (``/proc``: the
socket's inode among each worker's file descriptors), not from orbiter.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orbiter import AsyncClient
from orbiter.ports import free_port
from tests.support.pyorbited_client import SimpleClient
from tests.support.server import RunningServer
from tests.support.stomp_helpers import RawClient
from tests.support.wsclient import NativeClient

_WORKER = re.compile(r"worker (\d+) started \(pid (\d+)\)")
_REDIS = re.compile(r"private redis-server \(pid (\d+)\) on (\S+)")


def _workers(server: RunningServer) -> dict[int, int]:
    """Each worker's newest pid, by index, from the parent's log."""
    return {int(i): int(pid) for i, pid in _WORKER.findall(server.log)}


def _wait_listening(server: RunningServer, count: int) -> None:
    deadline = time.monotonic() + 20
    while server.log.count("listening on") < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.log.count("listening on") >= count, server.log


def _sockets(states: set[str]) -> list[tuple[int, int, int]]:
    """(local port, remote port, inode) of each IPv4 TCP socket in one of ``states``."""
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] in states:
            local, remote = fields[1], fields[2]
            found.append(
                (int(local.split(":")[1], 16), int(remote.split(":")[1], 16), int(fields[9]))
            )
    return found


def _inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _owners(port: int, pids: list[int]) -> dict[int, int]:
    """For each connection accepted on ``port``: its client's port -> the worker pid."""
    by_inode = {inode: pid for pid in pids for inode in _inodes(pid)}
    return {
        remote: by_inode[inode]
        for local, remote, inode in _sockets({"01"})
        if local == port and inode in by_inode
    }


def _listeners(port: int, pids: list[int]) -> set[int]:
    """The pids listening on ``port``."""
    by_inode = {inode: pid for pid in pids for inode in _inodes(pid)}
    return {by_inode[i] for local, _, i in _sockets({"0A"}) if local == port and i in by_inode}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


async def test_two_workers_share_connections_and_channels_then_stop_with_their_redis() -> None:
    orbit_port = free_port()
    server = RunningServer(
        f'[stomp]\nlisten = "127.0.0.1:0"\n[pyorbited]\nenabled = true\nport = {orbit_port}\n',
        args=("--workers", "2"),
    )
    clients: list[NativeClient] = []
    try:
        _wait_listening(server, 2)
        pids = list(_workers(server).values())
        assert len(pids) == 2
        port = int(server.url.rsplit(":", 1)[1])
        for _ in range(40):
            client = await NativeClient.open(server.ws_url)
            await client.call("subscribe", channel="chat:w")
            clients.append(client)
        owners = _owners(port, pids)
        on: dict[int, list[NativeClient]] = {pid: [] for pid in pids}
        for client in clients:
            sockname = client.ws.get_extra_info("sockname")
            on[owners[sockname[1]]].append(client)
        assert all(len(held) >= 8 for held in on.values()), {p: len(c) for p, c in on.items()}
        async with AsyncClient(server.url) as api:  # the workers' own count agrees
            cluster = (await api.stats())["cluster"]
        assert cluster["nodes"] == 2
        by_pid = {share["pid"]: share["connections"] for share in cluster["by_node"]}
        assert set(by_pid) == set(pids)
        for pid in pids:  # give or take this API client's connection
            assert len(on[pid]) <= by_pid[pid] <= len(on[pid]) + 1

        # Each worker's clients publish, interleaved: every subscriber on both gets every
        # publication once, in one order (the offsets).
        first, second = (on[pid][0] for pid in pids)
        for i in range(15):
            for name, client in (("x", first), ("y", second)):
                reply = await client.call("publish", channel="chat:w", data=f"{name}{i}")
                assert "result" in reply, reply
        expected = sorted(f"{n}{i}" for i in range(15) for n in "xy")
        orders = []
        for client in clients:
            got = [await client.next_push() for _ in range(30)]
            offsets = [p["offset"] for p in got]
            assert offsets == sorted(offsets)
            assert len(set(offsets)) == 30
            assert sorted(p["data"] for p in got) == expected
            orders.append([p["data"] for p in got])
        assert all(order == orders[0] for order in orders)
        await asyncio.sleep(0.2)
        assert all(client.pushes.empty() for client in clients)  # nothing twice

        # The STOMP TCP port: worker 0 only; a SEND there reaches subscribers on both.
        match = re.search(r"stomp listening on \S+:(\d+)", server.log)
        assert match is not None
        stomp_port = int(match.group(1))
        assert _listeners(stomp_port, pids) == {_workers(server)[0]}
        assert _listeners(port, pids) == set(pids)  # the HTTP port: both
        stomp = RawClient(stomp_port)
        try:
            assert stomp.connect().command == "CONNECTED"
            stomp.frame("SEND", [("destination", "/topic/chat:w")], b"from-stomp")
            for client in (on[pids[0]][1], on[pids[1]][1]):
                assert (await client.next_push())["data"] == "from-stomp"
        finally:
            stomp.close()

        # pyorbited's event port: worker 0 only; it reaches a key connected to worker 1.
        assert _listeners(orbit_port, pids) == {_workers(server)[0]}
        on_worker_1: NativeClient | None = None
        for i in range(40):  # until a keyed connection lands on worker 1 (bounded)
            keyed = await NativeClient.open(server.ws_url, user=f"k{i}", location="/x")
            clients.append(keyed)
            owner = _owners(port, pids)[keyed.ws.get_extra_info("sockname")[1]]
            if owner == _workers(server)[1]:
                on_worker_1, index = keyed, i
                break
        assert on_worker_1 is not None
        orbit = SimpleClient("127.0.0.1", orbit_port)
        try:
            answer = await asyncio.to_thread(orbit.event, [f"k{index}, 0, /x"], "via worker 0")
        finally:
            orbit.close()
        assert answer == b"Success\r\nid: 1\r\n\r\n"
        assert (await on_worker_1.next_push())["data"] == "via worker 0"
    finally:
        for client in clients:
            await client.close()
        redis = _REDIS.search(server.log)
        server.stop()
    assert redis is not None
    _assert_gone([*pids, int(redis.group(1))], redis.group(2))


def _assert_gone(pids: list[int], redis_socket: str) -> None:
    for pid in pids:
        assert not _alive(pid), f"pid {pid} still runs after the server stopped"
    assert not Path(redis_socket).exists()  # its socket, and its directory, removed


def test_a_worker_that_dies_is_started_again() -> None:
    server = RunningServer(args=("--workers", "2"))
    try:
        _wait_listening(server, 2)
        before = _workers(server)
        os.kill(before[1], signal.SIGKILL)
        assert server.wait_for_log("died (signal 9); starting it again", 10)
        deadline = time.monotonic() + 20
        while _workers(server)[1] == before[1] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _workers(server)[1] != before[1]
        _wait_listening(server, 3)
        assert _alive(before[0])  # the other worker went on
        assert asyncio.run(_stats_answered(server.url))
    finally:
        server.stop()


async def _stats_answered(url: str) -> bool:
    async with AsyncClient(url) as api:
        return "connections" in await api.stats()


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orbiter", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_workers_without_redis_server_on_path_refuse_saying_what_to_do(tmp_path: Path) -> None:
    done = _serve("--workers", "2", "--data-dir", str(tmp_path), env={"PATH": str(tmp_path)})
    assert done.returncode == 2
    assert "no redis-server is on PATH" in done.stderr
    assert "apt install redis-server" in done.stderr
    assert "--engine redis://" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("engine", ["sqlite", "memory", "config: sqlite"])
def test_workers_refuse_an_engine_of_one_process(engine: str, tmp_path: Path) -> None:
    if engine.startswith("config: "):  # named in the config file's [engine] table
        engine = engine.removeprefix("config: ")
        config = tmp_path / "orbiter.toml"
        config.write_text(f'[engine]\nkind = "{engine}"\n')
        chosen: tuple[str, ...] = ("--config", str(config))
    else:
        chosen = ("--engine", engine)
    done = _serve("--workers", "2", *chosen, "--data-dir", str(tmp_path))
    assert done.returncode == 2
    assert "--workers 2 needs an engine shared by its processes" in done.stderr
    assert ("one writer" if engine == "sqlite" else "one process") in done.stderr
    assert "Traceback" not in done.stderr


def test_a_worker_that_cannot_start_stops_the_server_with_its_reason(tmp_path: Path) -> None:
    done = _serve(
        "--workers", "2", "--element", "no_such_module_here:make", "--data-dir", str(tmp_path)
    )
    assert done.returncode == 1
    assert "cannot start" in done.stderr
    assert "no_such_module_here" in done.stderr
    assert "could not start: stopping the server" in done.stderr
    assert "Traceback" not in done.stderr
    assert "private redis-server stopped" in done.stderr


def test_workers_on_a_port_taken_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "orbiter",
                "serve",
                "--port",
                str(port),
                "--workers",
                "2",
                "--data-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].startswith("orbiter: cannot start: [Errno 98]")
    assert "Traceback" not in done.stderr
    assert "private redis-server stopped" in done.stderr  # started first, stopped again


async def test_sigint_to_the_parent_stops_every_worker_and_tells_their_clients() -> None:
    server = RunningServer(args=("--workers", "2"))
    clients: list[NativeClient] = []
    try:
        _wait_listening(server, 2)
        pids = list(_workers(server).values())
        clients = [await NativeClient.open(server.ws_url) for _ in range(6)]
        redis = _REDIS.search(server.log)
        assert redis is not None
        code = await asyncio.to_thread(server.stop, signal.SIGINT)
        assert code == 0
        for client in clients:  # told, whichever worker held them
            await asyncio.wait_for(client.closed.wait(), 5)
            assert client.close_reason == "server shutting down"
    finally:
        for client in clients:
            await client.close()
        server.stop()
    _assert_gone([*pids, int(redis.group(1))], redis.group(2))


def test_a_sigkilled_parent_takes_its_workers_and_its_redis_with_it() -> None:
    """No handler of the parent runs on SIGKILL: the workers and the private redis-server
    end all the same (their parent-death signal), and free the port."""
    server = RunningServer(args=("--workers", "2"))
    orphans: list[int] = []
    try:
        _wait_listening(server, 2)
        pids = list(_workers(server).values())
        redis = _REDIS.search(server.log)
        assert redis is not None
        orphans = [*pids, int(redis.group(1))]
        port = int(server.url.rsplit(":", 1)[1])
        assert _listeners(port, pids) == set(pids)
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(10)
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in orphans) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [pid for pid in orphans if _alive(pid)] == []
        with socket.socket() as probe:  # nobody listens on the port any more
            assert probe.connect_ex(("127.0.0.1", port)) != 0
    finally:
        for pid in orphans:  # (when the test fails: ours to stop)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        server.stop()
