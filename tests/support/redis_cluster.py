"""A real 3-master Redis Cluster for the cluster mode's tests, on free 127.0.0.1 ports.

Three ``redis-server --cluster-enabled yes`` processes, each in a temporary
directory, without persistence, joined by ``redis-cli --cluster create``
(Debian's ``redis-tools``, a dependency of ``redis-server``); stopped by
their PIDs. :func:`redis_cluster` is scoped per test module, and returns once
every node says the cluster is ``ok``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orbiter.lifeline import ending_with_this_process
from orbiter.ports import free_ports
from tests.support.redis_server import REDIS_SERVER

REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
#: Tries at starting the nodes, each on other ports.
_STARTS = 3


class _NodeExited(RuntimeError):
    """A node's process ended while starting (its log says why: a port taken, mostly)."""


def _ask(port: int, *words: str) -> bytes:
    """One inline command to the node on ``port``; its raw answer ("" if none)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(" ".join(words).encode() + b"\r\n")
            return sock.recv(4096)
    except OSError:
        return b""


class RedisCluster:
    """Three master nodes covering every slot; :attr:`url` names the cluster for orbiter."""

    def __init__(self) -> None:
        for binary in (REDIS_SERVER, REDIS_CLI):
            if shutil.which(binary) is None:
                raise RuntimeError(f"{binary} is not installed (scripts/system-packages does it)")
        self._dir = tempfile.TemporaryDirectory(prefix="orbiter-redis-cluster-")
        self.processes: list[subprocess.Popen[bytes]] = []
        for attempt in range(_STARTS):
            self.ports = free_ports(3)
            #: The cluster bus ports (Redis's default, port + 10000, may be past 65535).
            self.bus_ports = free_ports(3)
            try:
                self._start()
                return
            except BaseException as failure:
                self._stop_nodes()
                # Only a node that could not start is tried again, on other ports (one
                # of them may have been taken between picking and binding it).
                if not isinstance(failure, _NodeExited) or attempt == _STARTS - 1:
                    self._dir.cleanup()
                    raise

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        port, bus_port = self.ports[index], self.bus_ports[index]
        return subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{port}.conf",
                "--cluster-port",
                str(bus_port),
                "--cluster-node-timeout",
                "2000",
                # The slots of the other masters stay served while one is down.
                "--cluster-require-full-coverage",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir.name,
                "--logfile",
                f"redis-{port}.log",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Gone with a pytest killed mid-run (start it from the main thread: see lifeline).
            preexec_fn=ending_with_this_process(),
        )

    def _start(self) -> None:
        self.processes = [self._spawn(index) for index in range(len(self.ports))]
        self._wait(lambda port: _ask(port, "PING").startswith(b"+PONG"), "start")
        subprocess.run(
            [
                REDIS_CLI,
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
        self._wait(lambda port: b"cluster_state:ok" in _ask(port, "CLUSTER", "INFO"), "join")

    def _wait(self, ready: Callable[[int], bool], what: str) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if all(ready(port) for port in self.ports):
                return
            if any(process.poll() is not None for process in self.processes):
                raise _NodeExited(
                    f"a Redis Cluster node exited before it could {what} on ports "
                    f"{self.ports} (bus {self.bus_ports}); its log:\n{self._logs()}"
                )
            time.sleep(0.02)
        raise RuntimeError(f"the Redis Cluster did not {what} on ports {self.ports} within 15 s")

    def _logs(self) -> str:
        """The tail of each node's log file."""
        tails = []
        for port in self.ports:
            log = Path(self._dir.name) / f"redis-{port}.log"
            text = log.read_text(errors="replace") if log.exists() else "(no log)"
            tails.append(f"[{port}] " + "\n".join(text.splitlines()[-5:]))
        return "\n".join(tails)

    def port_of(self, key: str) -> int:
        """The port of the master that holds ``key``'s slot (``CLUSTER KEYSLOT`` and nodes)."""
        return self.port_of_slot(self.slot_of(key))

    def port_of_slot(self, slot: int) -> int:
        shards = _ask(self.ports[0], "CLUSTER", "NODES").decode()
        for line in shards.splitlines():
            fields = line.split()
            if len(fields) < 9 or "master" not in fields[2]:
                continue
            for span in fields[8:]:
                low, _, high = span.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return int(fields[1].split(":")[1].split("@")[0])
        raise RuntimeError(f"no master holds slot {slot}")

    def slot_of(self, key: str) -> int:
        return int(_ask(self.ports[0], "CLUSTER", "KEYSLOT", key)[1:].split(b"\r\n")[0])

    def move_slot(self, slot: int, to_port: int) -> None:
        """Migrate ``slot`` and its keys to the master on ``to_port``, as a resharding does
        (``CLUSTER SETSLOT`` ... ``MIGRATING``/``IMPORTING``, ``MIGRATE``, ``NODE``)."""
        self.finish_move(slot, to_port, self.begin_move(slot, to_port))

    def begin_move(
        self, slot: int, to_port: int, *, only: Callable[[str], bool] | None = None
    ) -> int:
        """The first half of :meth:`move_slot`: ``slot``'s keys (those ``only`` accepts, if
        given: a half-done migration) migrated to ``to_port``, the slot still ``MIGRATING``
        there (its old master answers ``ASK``, or ``TRYAGAIN`` to a command on keys on both
        masters); its old master's port."""
        from_port = next(port for port in self.ports if self._holds(port, slot))
        ids = {
            port: _ask(port, "CLUSTER", "MYID").split(b"\r\n")[1].decode()
            for port in (from_port, to_port)
        }
        _ask(to_port, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", ids[from_port])
        _ask(from_port, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", ids[to_port])
        listing = _ask(from_port, "CLUSTER", "GETKEYSINSLOT", str(slot), "1000").split(b"\r\n")
        keys = [line.decode() for line in listing[2::2] if line]
        keys = [key for key in keys if only is None or only(key)]
        if keys:
            answer = _ask(
                from_port, "MIGRATE", "127.0.0.1", str(to_port), '""', "0", "5000", "KEYS", *keys
            )
            assert answer.startswith(b"+OK"), answer
        return from_port

    def finish_move(self, slot: int, to_port: int, from_port: int) -> None:
        """The second half of :meth:`move_slot`: the keys left migrated, and every master says
        ``to_port`` holds ``slot``."""
        listing = _ask(from_port, "CLUSTER", "GETKEYSINSLOT", str(slot), "1000").split(b"\r\n")
        keys = [line.decode() for line in listing[2::2] if line]
        if keys:
            answer = _ask(
                from_port, "MIGRATE", "127.0.0.1", str(to_port), '""', "0", "5000", "KEYS", *keys
            )
            assert answer.startswith(b"+OK"), answer
        self.assign_slot(slot, to_port)

    def assign_slot(self, slot: int, port: int) -> None:
        """Every master says the master on ``port`` holds ``slot`` (``CLUSTER SETSLOT`` ...
        ``NODE``, which also gives an unassigned slot)."""
        to_port = port
        to_id = _ask(to_port, "CLUSTER", "MYID").split(b"\r\n")[1].decode()
        for each in (to_port, *self.ports):
            _ask(each, "CLUSTER", "SETSLOT", str(slot), "NODE", to_id)

    def unassign_slot(self, slot: int) -> None:
        """No master holds ``slot`` (``CLUSTER DELSLOTS`` on each; its keys stay where they
        are): a command on it is answered ``CLUSTERDOWN Hash slot not served``."""
        for port in self.ports:
            answer = _ask(port, "CLUSTER", "DELSLOTS", str(slot))
            assert answer.startswith(b"+OK"), answer

    def error_count(self, port: int, error: str) -> int:
        """How many ``error`` answers (``TRYAGAIN``, ``CLUSTERDOWN``...) the master on ``port``
        gave (``INFO errorstats``)."""
        for line in _ask(port, "INFO", "errorstats").decode().splitlines():
            if line.startswith(f"errorstat_{error}:count="):
                return int(line.split("=", 1)[1])
        return 0

    def _holds(self, port: int, slot: int) -> bool:
        return self.port_of_slot(slot) == port

    def stop_node(self, port: int) -> None:
        """Kill the master on ``port`` (by its PID), as a crash would."""
        process = self.processes[self.ports.index(port)]
        process.kill()
        process.wait(10)

    def drop_slots(self, port: int) -> None:
        """The other masters forget that the (stopped) master on ``port`` holds its slots
        (``CLUSTER DELSLOTSRANGE``), as when it is removed from the cluster: no master holds
        them until it starts again and claims them."""
        spans: list[str] = []
        for line in (
            _ask(self.ports[0] if self.ports[0] != port else self.ports[1], "CLUSTER", "NODES")
            .decode()
            .splitlines()
        ):
            fields = line.split()
            if len(fields) >= 9 and fields[1].split("@")[0].endswith(f":{port}"):
                for span in fields[8:]:
                    if span[0].isdigit():
                        low, _, high = span.partition("-")
                        spans += [low, high or low]
        assert spans, f"the master on {port} holds no slot"
        for other in self.ports:
            if other != port:
                answer = _ask(other, "CLUSTER", "DELSLOTSRANGE", *spans)
                assert answer.startswith(b"+OK"), answer

    def start_node(self, port: int) -> None:
        """Start the master on ``port`` again (its node id and slots from its nodes file, its
        data lost), unless it still runs; returns once it answers."""
        index = self.ports.index(port)
        if self.processes[index].poll() is None:  # not stopped (a test failed before it
            return  # stopped it): a second one could not bind, and the first would leak
        self.processes[index] = self._spawn(index)
        self._wait(lambda p: _ask(p, "PING").startswith(b"+PONG"), "restart")

    def close(self) -> None:
        """Stop every node (by its PID) and remove their directories."""
        self._stop_nodes()
        self._dir.cleanup()

    def _stop_nodes(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
        for process in self.processes:
            process.wait(10)
        self.processes = []


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisCluster]:
    """A fresh 3-master Redis Cluster for this test module (each test uses its own prefix)."""
    cluster = RedisCluster()
    yield cluster
    cluster.close()
