"""Real TCP services the proxy tests reach: ngircd (Debian's IRC server), an echo server."""

from __future__ import annotations

import shutil
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from orbiter.ports import free_port

NGIRCD = shutil.which("ngircd") or "/usr/sbin/ngircd"

_NGIRCD_CONF = """[Global]
Name = irc.orbiter.test
Info = orbiter test server
Listen = 127.0.0.1
Ports = {port}
MotdPhrase = "orbiter test"
[Limits]
PingTimeout = 120
MaxNickLength = 20
[Options]
PAM = no
Ident = no
DNS = no
"""


class Ngircd:
    """An ngircd process (no daemon, own config) on a free 127.0.0.1 port."""

    def __init__(self) -> None:
        if not Path(NGIRCD).exists():
            raise RuntimeError("ngircd is not installed (scripts/system-packages installs it)")
        self._dir = tempfile.TemporaryDirectory(prefix="orbiter-ngircd-")
        self.port = free_port()
        conf = Path(self._dir.name) / "ngircd.conf"
        conf.write_text(_NGIRCD_CONF.format(port=self.port))
        self.process = subprocess.Popen(
            [NGIRCD, "--nodaemon", "--config", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("ngircd did not start")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._dir.cleanup()


class ThreadedEcho:
    """A TCP echo server in a thread (for sync tests), on a free 127.0.0.1 port."""

    def __init__(self) -> None:
        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                while data := self.request.recv(65536):
                    self.request.sendall(data)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
