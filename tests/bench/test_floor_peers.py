"""The floor peers of issue 21's two targets: ``uvloop-raw-native`` and ``uvloop-raw-batch``.

``uvloop-raw-native`` (``peers/raw_native.py``) speaks orbiter's native
protocol as the load generator does: run against it for real (every
publication delivered once, every command answered), and spoken to here
byte by byte (RFC 6455's accept, masked commands unmasked, the reply and
push shapes). ``uvloop-raw-batch`` (``peers/raw_broadcast.py --batch``)
writes each subscriber one frame holding everything queued for it: seen on
the wire (publications read together arrive in one frame, and its
``SIGTERM`` report counts them), its stepped passes driven directly (each
subscriber gets each publication once, at most a step of subscribers per
call, publications arriving mid-pass join the frames of those not reached
yet), and both modes run for real at a rate.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import cast

import pytest

from orbiter.bench.peers.raw_broadcast import Passes, _Queue
from orbiter.bench.runner import Target, run
from orbiter.bench.scenarios import Scenario
from orbiter.bench.spawn import _wait_listening, spawn
from orbiter.ports import free_port

needs_gcc = pytest.mark.skipif(
    shutil.which("gcc") is None, reason="needs gcc (scripts/system-packages installs it)"
)

NATIVE = Scenario(
    "small-native",
    subscribers=20,
    channels=2,
    messages=200,
    route="native",
    depth=16,
    timeout=30,
    settle=1.0,
)
RATE = Scenario("small-rate", subscribers=12, channels=1, messages=60, rate=200, settle=1.0)
#: RFC 6455 section 1.3's worked example.
RFC_KEY, RFC_ACCEPT = b"dGhlIHNhbXBsZSBub25jZQ==", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def peer(module: str, *args: str, env: dict[str, str] | None = None) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", f"orbiter.bench.peers.{module}", str(port), *args],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
    )
    try:
        _wait_listening(port, proc)
        yield port
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(10)


def masked_frame(payload: bytes, mask: bytes = b"\x37\xfa\x21\x3d") -> bytes:
    """A client's text frame, masked with a key that is not zero (RFC 6455 section 5.3)."""
    assert len(payload) < 126
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + body


def read_head(s: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        assert chunk, "the connection closed during the handshake"
        head += chunk
    return head


def read_frame(s: socket.socket) -> bytes:
    """One unmasked server frame's payload."""

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = s.recv(n - len(data))
            assert chunk, "the connection closed mid-frame"
            data += chunk
        return data

    first, second = exactly(2)
    assert first == 0x81
    assert not second & 0x80
    length = second & 127
    if length == 126:
        length = int.from_bytes(exactly(2), "big")
    return exactly(length)


def ws_connect(port: int, path: bytes, key: bytes = RFC_KEY) -> tuple[socket.socket, bytes]:
    s = socket.create_connection(("127.0.0.1", port), 5)
    s.sendall(
        b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: "
        + key
        + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    return s, read_head(s)


@pytest.fixture
def native_port() -> Iterator[int]:
    yield from peer("raw_native")


def test_the_native_floor_answers_rfc_6455s_example(native_port: int) -> None:
    s, head = ws_connect(native_port, b"/connection/websocket")
    s.close()
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"\r\nSec-WebSocket-Accept: " + RFC_ACCEPT + b"\r\n" in head


def test_the_native_floor_unmasks_answers_each_command_and_pushes_to_subscribers(
    native_port: int,
) -> None:
    sub, _ = ws_connect(native_port, b"/connection/websocket")
    pub, _ = ws_connect(native_port, b"/connection/websocket")
    with sub, pub:
        sub.sendall(
            masked_frame(b'{"id":1,"op":"connect"}')
            + masked_frame(b'{"id":2,"op":"subscribe","channel":"bench7"}')
        )
        replies = read_frame(sub)
        while replies.count(b"\n") < 1:  # (the two may come in two reads, two frames)
            replies += b"\n" + read_frame(sub)
        assert replies.split(b"\n") == [b'{"id":1,"result":{}}', b'{"id":2,"result":{}}']
        pub.sendall(
            masked_frame(b'{"id":1,"op":"connect"}')
            + masked_frame(b'{"id":1000,"op":"publish","channel":"bench7","data":"#B0.5#x"}')
            + masked_frame(b'{"id":1001,"op":"publish","channel":"other","data":{"a":[1]}}')
            + masked_frame(b'{"id":1002,"op":"publish","channel":"bench7","data":{"b":2}}')
        )
        answered: list[bytes] = []
        while len(answered) < 4:
            answered += read_frame(pub).split(b"\n")
        assert answered == [
            b'{"id":1,"result":{}}',
            b'{"id":1000,"result":{}}',
            b'{"id":1001,"result":{}}',
            b'{"id":1002,"result":{}}',
        ]
        # One frame per publication, only the subscribed channel's, the data as sent.
        assert read_frame(sub) == b'{"push":"pub","channel":"bench7","data":"#B0.5#x"}'
        assert read_frame(sub) == b'{"push":"pub","channel":"bench7","data":{"b":2}}'


@needs_gcc
def test_the_native_floor_delivers_every_native_publication_once() -> None:
    server = spawn("uvloop-raw-native", None)
    try:
        assert server.target.flavor == "orbiter"
        result = run(NATIVE, server.target, progress=None)
    finally:
        server.stop()
    assert result["subscribers_failed"] == 0  # (a wrong Sec-WebSocket-Accept fails them)
    assert result["published"] == result["publish_acked"] == 200
    assert result["publish_errors"] == 0
    assert result["deliveries"] == result["expected_deliveries"] == 20 * 100
    assert result["lost"] == result["duplicates"] == result["unexpected"] == 0


def post(channel: bytes, body: bytes) -> bytes:
    return (
        b"POST /pub?channel=" + channel + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body
    )


def test_publications_read_together_reach_a_subscriber_in_one_frame(tmp_path: Path) -> None:
    stats = tmp_path / "stats.txt"
    env = {**os.environ, "ORBITER_FLOOR_STATS": str(stats)}
    ports = peer("raw_broadcast", "--batch", "0", env=env)
    port = next(ports)
    sub, head = ws_connect(port, b"/ws?channel=c")
    assert b"\r\nSec-WebSocket-Accept: " + RFC_ACCEPT + b"\r\n" in head
    with sub, socket.create_connection(("127.0.0.1", port), 5) as pub:
        pub.sendall(post(b"c", b"#B0.1#") + post(b"c", b"#B1.1#") + post(b"c", b"#B2.1#"))
        answers = b""
        while answers.count(b"ok") < 3:
            answers += pub.recv(4096)
        assert read_frame(sub) == b"#B0.1#\n#B1.1#\n#B2.1#"
    with pytest.raises(StopIteration):
        next(ports)  # SIGTERM: the peer reports its passes and exits
    report = stats.read_text()
    assert "1 subscriber writes (3.00 publications each)" in report
    assert "; 1 passes, wall ms p50 " in report


class Recorder:
    """A stand-in for a subscriber's transport: the frames written to it."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.frames.append(data)

    def payloads(self) -> list[bytes]:
        return [frame[2:] for frame in self.frames]  # (short frames: a 2-byte header)


def test_a_stepped_pass_writes_a_step_at_a_time_and_each_publication_once() -> None:
    recorders = [Recorder() for _ in range(5)]
    subscribers = cast(set[asyncio.Transport], set(recorders))
    passes = Passes({b"c": subscribers}, 2)
    queue = _Queue()
    order = cast(list[Recorder], list(subscribers))  # the pass's order

    def written() -> list[int]:
        return [len(r.frames) for r in order]

    queue.pubs.append(b"a")
    assert passes._step(queue, subscribers) is True
    assert written() == [1, 1, 0, 0, 0]
    queue.pubs.append(b"b")  # read between steps: joins the frames of those not reached
    assert passes._step(queue, subscribers) is True
    assert written() == [1, 1, 1, 1, 0]
    assert passes._step(queue, subscribers) is True  # the pass is over; "b" is still due
    assert written() == [1, 1, 1, 1, 1]
    assert passes._step(queue, subscribers) is True
    assert written() == [2, 2, 1, 1, 1]
    assert passes._step(queue, subscribers) is True  # the others had "b" already
    assert passes._step(queue, subscribers) is False
    assert written() == [2, 2, 1, 1, 1]
    assert [r.payloads() for r in order] == [[b"a", b"b"]] * 2 + [[b"a\nb"]] * 3
    assert passes.writes == 7
    assert passes.pubs_written == 10
    assert queue.pubs == []
    assert queue.base == 2


def test_a_whole_pass_writes_every_subscriber_one_frame_at_once() -> None:
    recorders = [Recorder() for _ in range(5)]
    subscribers = cast(set[asyncio.Transport], set(recorders))
    passes = Passes({b"c": subscribers}, 0)
    queue = _Queue()
    queue.pubs += [b"a", b"b"]
    assert passes._step(queue, subscribers) is False
    assert [r.payloads() for r in recorders] == [[b"a\nb"]] * 5
    assert queue.pubs == []
    assert queue.base == 2


@needs_gcc
@pytest.mark.parametrize("step", ["0", "5"])
def test_the_batch_floor_delivers_every_publication_once_at_a_rate(step: str) -> None:
    for port in peer("raw_broadcast", "--batch", step):
        target = Target("uvloop-raw-batch", "broadcast", f"http://127.0.0.1:{port}")
        result = run(replace(RATE, timeout=30), target, progress=None)
    assert result["subscribers_failed"] == 0
    assert result["published"] == result["publish_acked"] == 60
    assert result["deliveries"] == result["expected_deliveries"] == 12 * 60
    assert result["lost"] == result["duplicates"] == result["unexpected"] == 0


def test_the_default_floor_still_writes_each_publication_at_once() -> None:
    # Without --batch, uvloop-raw is as before: one frame per publication, and no report.
    for port in peer("raw_broadcast"):
        sub, _ = ws_connect(port, b"/ws?channel=c")
        with sub, socket.create_connection(("127.0.0.1", port), 5) as pub:
            pub.sendall(post(b"c", b"one") + post(b"c", b"two"))
            assert read_frame(sub) == b"one"
            assert read_frame(sub) == b"two"


def test_sigterm_ends_the_batch_floor_cleanly() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "orbiter.bench.peers.raw_broadcast", str(port), "--batch", "0"],
        stderr=subprocess.PIPE,
    )
    try:
        _wait_listening(port, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert b"passes step=0: 0 steps, 0 subscriber writes" in err
