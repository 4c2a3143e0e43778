"""A real ``nginx`` spreading requests round-robin over backends, with no affinity at all.

Each request (not each connection: nginx balances per request) goes to the
next backend in turn, so one session's successive requests land on
different nodes; a request its backend fails is not retried on another.
Its access log names the backend of each request
(:meth:`NginxBalancer.logged`). The front is :mod:`orbiter.nginx_front`'s
(files in a temporary directory; stopped by its PID).
"""

from __future__ import annotations

from orbiter.nginx_front import FrontSettings, NginxFront, find_nginx
from orbiter.ports import free_port

NGINX = find_nginx()


class NginxBalancer:
    """``nginx`` on a free 127.0.0.1 port in front of ``backends`` (``host:port`` each)."""

    def __init__(self, backends: list[str]) -> None:
        if NGINX is None:
            raise RuntimeError("nginx is not installed (scripts/system-packages does it)")
        self.port = free_port()
        settings = FrontSettings(
            listen=f"127.0.0.1:{self.port}",
            upstreams=tuple(backends),
            access_log="$request_uri $upstream_addr",
            worker_connections=1024,
            retry_next_node=False,
        )
        self._front = NginxFront(settings, NGINX)
        self._front.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logged(self) -> list[tuple[str, str]]:
        """Each request logged so far: its URI and the backend that took it, in order."""
        if not self._front.access_log.exists():
            return []
        lines = self._front.access_log.read_text().splitlines()
        return [(uri, backend) for uri, backend in (line.rsplit(" ", 1) for line in lines)]

    def close(self) -> None:
        self._front.stop()
