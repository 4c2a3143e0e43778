"""The load generator checks every WebSocket handshake as a browser does, and the floor peer passes.

The load generator (``orbiter/bench/loadgen.c``, built with gcc as ``orbiter
bench`` builds it) runs against a tiny server started here on 127.0.0.1 that
answers each handshake as a test case says: a right answer must connect, and
every wrong one (an accept value one character off, the GUID the
``uvloop-raw`` peer once used, no 101, no ``Upgrade`` or ``Connection``)
must count as a failed subscriber, never a connected one, and end a
publisher's run. The ``uvloop-raw`` peer's accept value is checked against
RFC 6455's formula, computed here from the RFC's own GUID.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from orbiter.bench.native import loadgen_binary
from orbiter.bench.spawn import _wait_listening
from orbiter.ports import free_port

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None, reason="needs gcc (scripts/system-packages installs it)"
)

#: RFC 6455 section 1.3, written out here rather than taken from orbiter's code.
RFC_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: What the ``uvloop-raw`` peer used before (its last 12 characters scrambled).
WRONG_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B85"


def rfc_accept(key: bytes, guid: bytes = RFC_GUID) -> bytes:
    return base64.b64encode(hashlib.sha1(key + guid).digest())


def answer(
    accept: bytes | None, *, status: bytes = b"101 Switching Protocols", headers: bytes = b""
) -> bytes:
    """A handshake answer; ``headers`` default to "Upgrade: websocket" and "Connection: Upgrade"."""
    lines = headers or b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
    if accept is not None:
        lines += b"Sec-WebSocket-Accept: " + accept + b"\r\n"
    return b"HTTP/1.1 " + status + b"\r\n" + lines + b"\r\n"


def one_character_off(accept: bytes, at: int) -> bytes:
    """``accept`` with its character ``at`` replaced by another base64 character."""
    swapped = b"B" if accept[at : at + 1] == b"A" else b"A"
    return accept[:at] + swapped + accept[at + 1 :]


Answer = Callable[[bytes], bytes]

RIGHT: dict[str, Answer] = {
    "rfc": lambda key: answer(rfc_accept(key)),
    # what RFC 6455 lets a server vary: header names' and the Upgrade value's case,
    # other tokens beside Upgrade in Connection, blanks around values
    "other spellings": lambda key: answer(
        rfc_accept(key),
        headers=b"upgrade: WebSocket\r\nCONNECTION:  keep-alive, upgrade \r\nServer: x\r\n",
    ),
}

WRONG: dict[str, Answer] = {
    "the old peer's GUID": lambda key: answer(rfc_accept(key, WRONG_GUID)),
    "first character off": lambda key: answer(one_character_off(rfc_accept(key), 0)),
    "middle character off": lambda key: answer(one_character_off(rfc_accept(key), 13)),
    "last character off": lambda key: answer(one_character_off(rfc_accept(key), 26)),
    "case changed": lambda key: answer(rfc_accept(key).swapcase()),
    "padding dropped": lambda key: answer(rfc_accept(key).rstrip(b"=")),
    "the key echoed": lambda key: answer(key),
    "the RFC's example for another key": lambda key: answer(b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
    "no accept": lambda key: answer(None),
    "a wrong accept beside the right one": lambda key: answer(
        rfc_accept(key),
        headers=b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n",
    ),
    "status 200": lambda key: answer(rfc_accept(key), status=b"200 OK"),
    "status 1010": lambda key: answer(rfc_accept(key), status=b"1010 Switching"),
    "no Upgrade": lambda key: answer(rfc_accept(key), headers=b"Connection: Upgrade\r\n"),
    "Upgrade: h2c": lambda key: answer(
        rfc_accept(key), headers=b"Upgrade: h2c\r\nConnection: Upgrade\r\n"
    ),
    "no Connection": lambda key: answer(rfc_accept(key), headers=b"Upgrade: websocket\r\n"),
    "Connection: keep-alive": lambda key: answer(
        rfc_accept(key), headers=b"Upgrade: websocket\r\nConnection: keep-alive\r\n"
    ),
}


@dataclass
class HandshakeServer:
    """Answers each request head with ``respond(key)``, then awaits bytes or the end."""

    respond: Answer
    listener: socket.socket = field(default_factory=socket.socket)
    keys: list[bytes] = field(default_factory=list)
    after_handshake: list[bytes] = field(default_factory=list)

    @property
    def port(self) -> int:
        port: int = self.listener.getsockname()[1]
        return port

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # the listener was closed: the test is over
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(20)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 16384:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            key = b""
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"sec-websocket-key":
                    key = value.strip()
            self.keys.append(key)
            conn.sendall(self.respond(key))
            # a publisher's frame (or the load generator's exit) ends the connection
            self.after_handshake.append(conn.recv(4096))


@pytest.fixture
def handshake_server(request: pytest.FixtureRequest) -> Iterator[HandshakeServer]:
    server = HandshakeServer(request.param)
    server.listener.bind(("127.0.0.1", 0))
    server.listener.listen(16)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    yield server
    # close() alone does not wake a thread blocked in accept() (Linux): shutdown() does.
    server.listener.shutdown(socket.SHUT_RDWR)
    server.listener.close()
    thread.join(5)
    assert not thread.is_alive()


@dataclass
class LoadgenRun:
    ready: int
    failed: int
    report: dict[str, object] | None
    returncode: int
    stderr: str


def run_loadgen(tmp_path: Path, port: int, *lines: str) -> LoadgenRun:
    """The load generator with a config of ``lines`` against 127.0.0.1:``port``, told GO at once."""
    config = tmp_path / "loadgen.conf"
    config.write_text(
        "\n".join(["host 127.0.0.1", f"port {port}", "timeout_ms 10000", "settle_ms 0", *lines])
        + "\n"
    )
    done = subprocess.run(
        [str(loadgen_binary()), str(config)],
        input="GO\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    ready = failed = -1
    report = None
    for line in done.stdout.splitlines():
        if line.startswith("READY "):
            ready, failed = (int(n) for n in line.split()[1:])
        elif line.startswith("{"):
            report = orjson.loads(line)
    return LoadgenRun(ready, failed, report, done.returncode, done.stderr)


SUBSCRIBERS = ("ws /ws?channel=a", "ws /ws?channel=b", "ws /ws?channel=c")
#: One publication over a WebSocket publisher, its frame the bare payload.
PUBLISHER = ("nmsgs 1", "channel c", "pub_ws 1", "pub_path /ws", "pub_item @P")


@pytest.mark.parametrize("handshake_server", RIGHT.values(), ids=RIGHT.keys(), indirect=True)
def test_a_right_handshake_connects_each_subscriber_with_its_own_fresh_key(
    handshake_server: HandshakeServer, tmp_path: Path
) -> None:
    run = run_loadgen(tmp_path, handshake_server.port, *SUBSCRIBERS)
    assert (run.ready, run.failed) == (3, 0), run.stderr
    assert run.report is not None
    assert run.report["handshake_errors"] == 0
    assert run.report["connections"] == [[0, 0, 0]] * 3
    # RFC 6455 section 4.1: a random 16-byte nonce, base64, chosen for each connection
    assert len(handshake_server.keys) == 3
    assert len(set(handshake_server.keys)) == 3
    assert all(len(binascii.a2b_base64(key)) == 16 for key in handshake_server.keys)
    assert b"dGhlIHNhbXBsZSBub25jZQ==" not in handshake_server.keys  # the RFC's sample key


@pytest.mark.parametrize("handshake_server", WRONG.values(), ids=WRONG.keys(), indirect=True)
def test_a_wrong_handshake_is_a_failed_subscriber_never_a_connected_one(
    handshake_server: HandshakeServer, tmp_path: Path
) -> None:
    run = run_loadgen(tmp_path, handshake_server.port, *SUBSCRIBERS)
    assert (run.ready, run.failed) == (0, 3), run.stderr
    assert run.report is not None
    assert run.report["handshake_errors"] == 3
    assert run.report["connections"] == [[0, 0, 2]] * 3  # 2: failed
    assert "WebSocket handshake refused" in run.stderr


@pytest.mark.parametrize("handshake_server", [RIGHT["rfc"]], ids=["rfc"], indirect=True)
def test_a_publisher_with_a_right_handshake_publishes(
    handshake_server: HandshakeServer, tmp_path: Path
) -> None:
    run = run_loadgen(tmp_path, handshake_server.port, *PUBLISHER)
    assert run.returncode == 0, run.stderr
    assert run.report is not None
    assert run.report["published"] == 1
    assert b"#B0." in handshake_server.after_handshake[0]  # the publication's frame arrived


@pytest.mark.parametrize(
    "handshake_server",
    [WRONG["last character off"], WRONG["the old peer's GUID"], WRONG["no Upgrade"]],
    ids=["last character off", "the old peer's GUID", "no Upgrade"],
    indirect=True,
)
def test_a_publisher_with_a_wrong_handshake_ends_the_run(
    handshake_server: HandshakeServer, tmp_path: Path
) -> None:
    run = run_loadgen(tmp_path, handshake_server.port, *PUBLISHER)
    assert run.returncode == 2
    assert run.report is None
    assert "publisher's WebSocket handshake refused" in run.stderr
    assert handshake_server.after_handshake in ([], [b""])  # nothing was published


@pytest.fixture(scope="module")
def raw_peer_port() -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "orbiter.bench.peers.raw_broadcast", str(port)],
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        _wait_listening(port, proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def raw_handshake(port: int, key: bytes) -> dict[bytes, bytes]:
    """The peer's answer to ``key``: the status line under b"", then the headers."""
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.sendall(
            b"GET /ws?channel=c HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: "
            + key
            + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 16384:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
    status, *lines = head.partition(b"\r\n\r\n")[0].split(b"\r\n")
    headers = {b"": status}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return headers


def test_the_raw_peer_answers_rfc_6455s_example(raw_peer_port: int) -> None:
    # RFC 6455 section 1.3's worked example, key and accept both as printed there
    headers = raw_handshake(raw_peer_port, b"dGhlIHNhbXBsZSBub25jZQ==")
    assert headers[b""].startswith(b"HTTP/1.1 101 ")
    assert headers[b"sec-websocket-accept"] == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_the_raw_peer_answers_a_random_key_with_rfc_6455s_accept(raw_peer_port: int) -> None:
    for _ in range(5):
        key = base64.b64encode(os.urandom(16))
        headers = raw_handshake(raw_peer_port, key)
        assert headers[b""].startswith(b"HTTP/1.1 101 ")
        assert headers[b"upgrade"].lower() == b"websocket"
        assert headers[b"connection"].lower() == b"upgrade"
        assert headers[b"sec-websocket-accept"] == rfc_accept(key)
        assert headers[b"sec-websocket-accept"] != rfc_accept(key, WRONG_GUID)


def test_the_load_generator_connects_to_the_raw_peer(raw_peer_port: int, tmp_path: Path) -> None:
    run = run_loadgen(tmp_path, raw_peer_port, *SUBSCRIBERS)
    assert (run.ready, run.failed) == (3, 0), run.stderr
    assert run.report is not None
    assert run.report["handshake_errors"] == 0
