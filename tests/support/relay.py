"""A TCP relay between a client and the server whose connections tests can cut or freeze."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any


class Relay:
    """A TCP relay, 127.0.0.1:``port`` → the server, whose connections can be cut.

    ``cut()`` drops every live connection and makes the relay refuse new ones
    (accepted, then reset at once) until ``restore()``. ``freeze()`` keeps the
    connections open but silently discards everything, as a network that
    vanished without a FIN does. ``vanish()`` resets the clients' ends only and
    keeps the server's ends open and silent, as when a client's network went and
    the server was not told; ``end_vanished()`` resets those too.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        #: The server's end of each connection, and those kept open by vanish().
        self._upstreams: set[socket.socket] = set()
        self._kept: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._open = True
        self._closed = False
        self.frozen = False
        self.accepted = 0
        self.refused = 0
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
                refuse = self._closed or not self._open
                if refuse:
                    self.refused += 1
            if refuse:
                _abort(conn)
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                _abort(conn)
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._closed or not self._open:
                    _abort(conn)
                    _abort(upstream)
                    continue
                self._socks.update((conn, upstream))
                self._upstreams.add(upstream)
                self.accepted += 1
            self._spawn(self._pump, conn, upstream)
            self._spawn(self._pump, upstream, conn)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if not self.frozen:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            # Whichever direction ends first ends the pair (wakes the other pump).
            with self._lock:
                self._socks.discard(src)
                self._socks.discard(dst)
                ends = [sock for sock in (src, dst) if sock not in self._kept]
                self._upstreams.difference_update(ends)
            for sock in ends:
                _abort(sock)

    def cut(self) -> None:
        """Drop every live connection; refuse new ones until :meth:`restore`."""
        with self._lock:
            self._open = False
            socks, self._socks = self._socks, set()
        for sock in socks:
            _abort(sock)

    def vanish(self) -> None:
        """Reset every client's end; the server's ends stay open, silent, until
        :meth:`end_vanished` or :meth:`close`. New connections are relayed as usual."""
        with self._lock:
            kept = self._socks & self._upstreams
            self._kept |= kept
            socks, self._socks = self._socks - kept, set()
        for sock in socks:
            _abort(sock)

    def end_vanished(self) -> None:
        """Reset the server's ends that :meth:`vanish` kept open: now the server knows."""
        with self._lock:
            kept, self._kept = self._kept, set()
            self._upstreams -= kept
        for sock in kept:
            _abort(sock)

    def freeze(self) -> None:
        """Keep connections open but deliver nothing, in either direction."""
        self.frozen = True

    def restore(self) -> None:
        with self._lock:
            self._open = True

    def close(self) -> None:
        with self._lock:
            self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut()
        self.end_vanished()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)


def _abort(sock: socket.socket) -> None:
    """Reset a connection (RST, not a polite FIN) and wake any thread blocked on it."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
