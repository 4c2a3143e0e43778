"""A full disk under STOMP persistent queue messages: an ERROR, never a false RECEIPT, and the
broker goes on serving.

The server runs with a file-size limit (``RLIMIT_FSIZE``, as in
``test_durable_full_disk.py``): persistent SENDs of 8 KB fill the queue file until
one fails. That SEND gets ERROR ``not stored`` with its ``receipt-id`` and no
RECEIPT; another connection still sends and consumes in-memory queue messages;
with room again (the limit lifted) persistent SENDs are kept again, and after a
restart exactly the receipted messages are there, in order.
"""

from __future__ import annotations

import resource
import signal
from pathlib import Path

from tests.support.server import RunningServer
from tests.support.stomp_helpers import _STOMP_PORT, RawClient

FILE_LIMIT = 192 * 1024
BODY = b"x" * 8000
CONFIG = """
[stomp]
listen = "127.0.0.1:0"
"""


def _small_files() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, resource.RLIM_INFINITY))


def _start(data_dir: Path, small: bool) -> tuple[RunningServer, RawClient]:
    server = RunningServer(
        CONFIG,
        args=("--engine", "sqlite", "--data-dir", str(data_dir)),
        preexec=_small_files if small else None,
    )
    assert server.wait_for_log("stomp listening on", 10), server.log
    match = _STOMP_PORT.search(server.log)
    assert match is not None
    client = RawClient(int(match.group(1)))
    assert client.connect().command == "CONNECTED"
    return server, client


def _persist(client: RawClient, n: int) -> None:
    headers = [("destination", "/queue/disk"), ("persistent", "true"), ("receipt", f"r{n}")]
    client.frame("SEND", headers, b"%d:" % n + BODY)


def test_a_full_disk_is_an_error_and_the_broker_goes_on(tmp_path: Path) -> None:
    server, producer = _start(tmp_path, small=True)
    try:
        receipted: list[int] = []
        for n in range(100):  # 800 KB: far past the limit
            _persist(producer, n)
            answer = producer.next()
            if answer.command != "RECEIPT":
                break
            receipted.append(n)
        assert answer.command == "ERROR", "the disk never filled"
        assert answer.get("message") == "not stored"
        assert answer.get("receipt-id") == f"r{len(receipted)}"
        assert receipted == list(range(len(receipted)))
        # Others are served: an in-memory queue message, sent and consumed.
        mem_port = int(_port(server))
        other = RawClient(mem_port)
        assert other.connect().command == "CONNECTED"
        other.frame("SEND", [("destination", "/queue/mem"), ("receipt", "m")], b"memory")
        assert other.next().command == "RECEIPT"
        other.frame("SUBSCRIBE", [("id", "1"), ("destination", "/queue/mem")])
        assert other.next().body == b"memory"
        # Room again: persistent SENDs are kept again.
        unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        resource.prlimit(server.process.pid, resource.RLIMIT_FSIZE, unlimited)
        again = RawClient(mem_port)
        assert again.connect().command == "CONNECTED"
        _persist(again, 1000)
        assert again.next().command == "RECEIPT"
        receipted.append(1000)
        for client in (producer, other, again):
            client.close()
        assert server.process.poll() is None
    finally:
        server.stop(signal.SIGKILL)

    server, consumer = _start(tmp_path, small=False)
    try:
        consumer.frame("SUBSCRIBE", [("id", "1"), ("destination", "/queue/disk")])
        bodies = [consumer.next().body for _ in receipted]
        assert [int(body.split(b":")[0]) for body in bodies] == receipted
        consumer.frame("DISCONNECT", [("receipt", "bye")])
        assert consumer.next().command == "RECEIPT"  # and no message more before it
    finally:
        server.stop()


def _port(server: RunningServer) -> str:
    match = _STOMP_PORT.search(server.log)
    assert match is not None
    return match.group(1)
