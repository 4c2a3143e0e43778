"""An HTTP relay that refuses WebSocket handshakes, as a proxy that blocks WebSockets does.

Each connection's first request head is read (at most :data:`MAX_HEAD` bytes, within
:data:`HEAD_TIMEOUT` seconds): one asking to upgrade to ``websocket`` is answered
``403 Forbidden`` and closed (a browser's WebSocket then fails with 1006); anything
else is relayed to the server, both ways, as it comes. Browsers open every WebSocket
on a connection of its own, so a kept-alive connection that began as plain HTTP
never carries one. Listens on 127.0.0.1 only; stops its own threads in :meth:`close`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Any

MAX_HEAD = 65536
HEAD_TIMEOUT = 5.0
REFUSAL = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class WebSocketBlocker:
    """127.0.0.1:``port`` → the server, with WebSocket handshakes refused (:attr:`blocked`)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        #: WebSocket handshakes refused so far.
        self.blocked = 0
        self._spawn(self._accept_loop)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # listener closed
            with self._lock:
                self._socks.add(conn)
            self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        head = b""
        try:
            conn.settimeout(HEAD_TIMEOUT)
            while b"\r\n\r\n" not in head and len(head) < MAX_HEAD:
                data = conn.recv(65536)
                if not data:
                    raise OSError("closed before its head")
                head += data
            conn.settimeout(None)
            lines = head.split(b"\r\n\r\n", 1)[0].lower().split(b"\r\n")
            if any(line.replace(b" ", b"") == b"upgrade:websocket" for line in lines):
                with self._lock:
                    self.blocked += 1
                conn.sendall(REFUSAL)
                raise OSError("a WebSocket handshake: refused")
            upstream = socket.create_connection(self._target, timeout=5)
            upstream.settimeout(None)
            with self._lock:
                self._socks.add(upstream)
            upstream.sendall(head)
        except OSError:
            self._end(conn)
            return
        self._spawn(self._pump, upstream, conn)
        self._pump(conn, upstream)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:  # whichever direction ends first ends the pair
            self._end(src)
            self._end(dst)

    def _end(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.discard(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            socks = list(self._socks)
        for sock in socks:
            self._end(sock)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)
