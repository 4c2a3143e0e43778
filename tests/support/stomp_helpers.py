"""Helpers for STOMP end-to-end tests: a server with the TCP listener, stomp.py listeners,
and a raw-socket client for the frames third-party clients will not send."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import stomp
from stomp.utils import Frame as StompPyFrame

from orbiter.protocol.stomp import Frame, FrameParser, encode_frame
from tests.support.server import RunningServer

_STOMP_PORT = re.compile(r"stomp listening on \S+:(\d+)")


def start_stomp_server(extra_toml: str = "", stomp_toml: str = "") -> tuple[RunningServer, int]:
    srv = RunningServer(f'{extra_toml}\n[stomp]\nlisten = "127.0.0.1:0"\n{stomp_toml}\n')
    if not srv.wait_for_log("stomp listening on", 10):
        srv.stop()
        raise RuntimeError("no STOMP listener:\n" + srv.log)
    match = _STOMP_PORT.search(srv.log)
    assert match is not None
    return srv, int(match.group(1))


class Collector(stomp.ConnectionListener):  # type: ignore[misc]
    """Every frame stomp.py hands the listener, and a way to wait for them."""

    def __init__(self) -> None:
        self.messages: list[StompPyFrame] = []
        self.errors: list[StompPyFrame] = []
        self.receipts: list[str] = []
        self.disconnected = threading.Event()
        self._cond = threading.Condition()

    def _add(self, box: list[Any], item: Any) -> None:
        with self._cond:
            box.append(item)
            self._cond.notify_all()

    def on_message(self, frame: StompPyFrame) -> None:
        self._add(self.messages, frame)

    def on_error(self, frame: StompPyFrame) -> None:
        self._add(self.errors, frame)

    def on_receipt(self, frame: StompPyFrame) -> None:
        self._add(self.receipts, frame.headers["receipt-id"])

    def on_disconnected(self) -> None:
        self.disconnected.set()

    def wait(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def wait_messages(self, count: int, timeout: float = 5.0) -> list[StompPyFrame]:
        assert self.wait(lambda: len(self.messages) >= count, timeout), self.messages
        return list(self.messages)

    def bodies(self) -> list[str]:
        return [m.body for m in self.messages]


def connect(port: int, version: str = "1.2", **kwargs: Any) -> tuple[stomp.Connection, Collector]:
    cls = {"1.0": stomp.Connection10, "1.1": stomp.Connection11, "1.2": stomp.Connection12}[version]
    conn = cls([("127.0.0.1", port)], auto_content_length=True)
    listener = Collector()
    conn.set_listener("collector", listener)
    conn.connect(wait=True, **kwargs)
    return conn, listener


class RawClient:
    """A STOMP client over a plain socket: sends any bytes, reads the broker's frames.

    ``source``: the loopback address it connects from (per-address limits apply to it).
    """

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=5, source_address=(source, 0)
        )
        self.parser = FrameParser(version="1.2")
        self.frames: list[Frame] = []
        self.beats = 0
        self.closed = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def frame(
        self, command: str, headers: list[tuple[str, str]] | None = None, body: bytes = b""
    ) -> None:
        self.send(encode_frame(command, headers or [], body, "1.2"))

    def connect(self, version: str = "1.2", heart_beat: str = "0,0", **headers: str) -> Frame:
        self.frame(
            "CONNECT",
            [
                ("accept-version", version),
                ("host", "localhost"),
                ("heart-beat", heart_beat),
                *headers.items(),
            ],
        )
        return self.next()

    def next(self, timeout: float = 5.0) -> Frame:
        """The next frame; AssertionError if none comes (or the broker closed)."""
        deadline = time.monotonic() + timeout
        while not self.frames:
            left = deadline - time.monotonic()
            assert left > 0, "no frame from the broker in time"
            assert not self.closed, "the broker closed the connection"
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                self.closed = True
                continue
            self.beats += _beats(data)
            self.frames += self.parser.feed(data)
        return self.frames.pop(0)

    def wait_closed(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionError:
                self.closed = True
                break
            if not data:
                self.closed = True
            else:
                self.frames += self.parser.feed(data)
        return self.closed

    def close(self) -> None:
        self.sock.close()


def _beats(data: bytes) -> int:
    """Heart-beats in a chunk: a lone EOL (outside frames, as the broker writes them)."""
    return data.count(b"\n") if data.strip(b"\n") == b"" else 0
