"""STOMP ``persistent:true`` queue messages survive a restart until consumed: real servers on one
data directory, stopped with SIGTERM or killed with SIGKILL, and stomp.py clients.

A persistent SEND's RECEIPT means its message is on disk: the kill comes from the
producer's listener the moment a RECEIPT arrives while a hundred more SENDs (of
16 KB, on ``sync = "full"``) are in flight, so a RECEIPT sent before the commit
would name a message the restarted server does not have. After each restart a
consumer gets every receipted message exactly once, in the order sent;
non-persistent messages are gone; a message a client-ack consumer held without ACK
comes back, one it ACKed (RECEIPT) does not.
On the memory engine persistent messages are kept in memory only (the control).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import stomp
from stomp.utils import Frame as StompPyFrame

from tests.support.server import RunningServer
from tests.support.stomp_helpers import _STOMP_PORT, Collector, connect

CONFIG = """
[engine]
sync = "full"
[stomp]
listen = "127.0.0.1:0"
max_queue_bytes = 33554432
"""
#: The second round's messages are this long, so that commits take their time.
PAD = "." * 16_000
QUEUE = "/queue/jobs"


class Servers:
    """Servers started one after another on one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.current: RunningServer | None = None

    def start(self, engine: str = "sqlite") -> int:
        """Start a server; its STOMP port."""
        args = ("--engine", engine, "--data-dir", str(self.data_dir))
        self.current = RunningServer(CONFIG, args=args)
        assert self.current.wait_for_log("stomp listening on", 10), self.current.log
        match = _STOMP_PORT.search(self.current.log)
        assert match is not None
        return int(match.group(1))

    def stop(self, sig: int = signal.SIGTERM) -> None:
        assert self.current is not None
        code = self.current.stop(sig)
        assert code == (0 if sig == signal.SIGTERM else -sig), self.current.log


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    servers = Servers(tmp_path / "data")
    yield servers
    if servers.current is not None:
        servers.current.stop(signal.SIGKILL)


def _send(conn: stomp.Connection, body: str, receipt: str, persistent: bool = True) -> None:
    headers = {"persistent": "true"} if persistent else {}
    conn.send(QUEUE, body, headers={**headers, "receipt": receipt})


def _drain(port: int, ack: str = "auto", quiet: float = 0.5) -> tuple[stomp.Connection, Collector]:
    """A consumer of the queue, once nothing more has come for ``quiet`` seconds."""
    conn, got = connect(port)
    conn.subscribe(QUEUE, id="c", ack=ack)
    count = -1
    while count != len(got.messages):
        count = len(got.messages)
        time.sleep(quiet)
    return conn, got


class KillOnReceipt(Collector):
    """Kills the server from the listener thread the moment a given RECEIPT arrives."""

    def __init__(self, pid: int, receipt: str) -> None:
        super().__init__()
        self.pid = pid
        self.target = receipt

    def on_receipt(self, frame: StompPyFrame) -> None:
        super().on_receipt(frame)
        if frame.headers["receipt-id"] == self.target:
            os.kill(self.pid, signal.SIGKILL)


def test_receipted_messages_survive_a_clean_stop_and_a_kill_once_each_in_order(
    servers: Servers,
) -> None:
    port = servers.start()
    producer, got = connect(port)
    for n in range(40):
        _send(producer, f"a{n}", f"a{n}")
        if n % 8 == 0:
            _send(producer, f"mem{n}", f"m{n}", persistent=False)
    assert got.wait(lambda: len(got.receipts) == 45, 10)
    producer.disconnect()
    servers.stop()  # SIGTERM

    port = servers.start()
    assert servers.current is not None
    killer = KillOnReceipt(servers.current.process.pid, "b150")
    producer, _ = connect(port)
    producer.set_listener("collector", killer)
    for n in range(300):  # pipelined: many in flight when b150 is receipted
        _send(producer, f"b{n}{PAD}", f"b{n}")
    assert killer.disconnected.wait(10)
    servers.stop(signal.SIGKILL)
    receipted = [r for r in killer.receipts if r.startswith("b")]
    assert "b150" in receipted
    assert receipted == [f"b{n}" for n in range(len(receipted))]

    port = servers.start()
    consumer, got = _drain(port)
    bodies = got.bodies()
    consumer.disconnect()
    assert bodies[:40] == [f"a{n}" for n in range(40)]  # no non-persistent one
    after = [body.removesuffix(PAD) for body in bodies[40:]]
    assert after[: len(receipted)] == receipted  # every receipted one, once, in order
    assert after == [f"b{n}" for n in range(len(after))]  # and maybe a few stored unreceipted
    servers.stop()

    port = servers.start()  # consumed (ack auto) before the stop: gone
    consumer, got = _drain(port, quiet=0.3)
    assert got.bodies() == []
    consumer.disconnect()


def test_a_held_message_is_redelivered_after_a_kill_and_an_acked_one_is_not(
    servers: Servers,
) -> None:
    port = servers.start()
    producer, got = connect(port)
    for n in range(3):
        _send(producer, f"j{n}", f"j{n}")
    assert got.wait(lambda: len(got.receipts) == 3)
    producer.disconnect()
    consumer, held = connect(port)
    consumer.subscribe(QUEUE, id="c", ack="client-individual")
    _, second, _ = held.wait_messages(3)
    consumer.ack(second.headers["ack"], receipt="acked")
    assert held.wait(lambda: "acked" in held.receipts)
    servers.stop(signal.SIGKILL)  # right after the ACK's RECEIPT; j0 and j2 never ACKed

    port = servers.start()
    consumer, again = connect(port)
    consumer.subscribe(QUEUE, id="c", ack="client")
    messages = again.wait_messages(2)
    time.sleep(0.3)
    assert [m.body for m in again.messages] == ["j0", "j2"]
    consumer.ack(messages[-1].headers["ack"], receipt="all")  # cumulative: both
    assert again.wait(lambda: "all" in again.receipts)
    servers.stop(signal.SIGKILL)

    port = servers.start()
    consumer, got = _drain(port, quiet=0.3)
    assert got.bodies() == []
    consumer.disconnect()


def test_on_the_memory_engine_persistent_messages_last_as_long_as_the_process(
    servers: Servers,
) -> None:
    port = servers.start("memory")
    producer, got = connect(port)
    _send(producer, "kept?", "r")
    assert got.wait(lambda: got.receipts == ["r"])
    producer.disconnect()
    servers.stop()
    assert not (servers.data_dir / "stomp-queues.sqlite3").exists()
    port = servers.start("memory")
    consumer, got = _drain(port, quiet=0.3)
    assert got.bodies() == []
    consumer.disconnect()
