"""A real ``nginx`` spreading requests round-robin over backends, with no affinity at all.

Each request (not each connection: nginx balances per request) goes to the
next backend in turn, so one session's successive requests land on
different nodes. Its access log names the backend of each request
(:meth:`NginxBalancer.backends_of`). Files in a temporary directory; stopped
by its PID.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.tcp_servers import free_port

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")

_CONF = """\
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
daemon off;
events {{ worker_connections 1024; }}
http {{
    log_format backend '$request_uri $upstream_addr';
    access_log {dir}/access.log backend;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream backends {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_next_upstream off;
            proxy_read_timeout 60s;
        }}
    }}
}}
"""


class NginxBalancer:
    """``nginx`` on a free 127.0.0.1 port in front of ``backends`` (``host:port`` each)."""

    def __init__(self, backends: list[str]) -> None:
        if NGINX is None:
            raise RuntimeError("nginx is not installed (scripts/system-packages does it)")
        self._dir = tempfile.TemporaryDirectory(prefix="orbiter-balancer-")
        path = Path(self._dir.name)
        path.chmod(0o755)  # its worker may run as another user
        self.port = free_port()
        servers = "\n".join(f"        server {backend};" for backend in backends)
        conf = path / "nginx.conf"
        conf.write_text(_CONF.format(dir=path, servers=servers, port=self.port))
        self._log = path / "access.log"
        self.process = subprocess.Popen(
            [NGINX, "-c", str(conf), "-p", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_listening()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not listen in time")

    def logged(self) -> list[tuple[str, str]]:
        """Each request logged so far: its URI and the backend that took it, in order."""
        if not self._log.exists():
            return []
        lines = self._log.read_text().splitlines()
        return [(uri, backend) for uri, backend in (line.rsplit(" ", 1) for line in lines)]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._dir.cleanup()
