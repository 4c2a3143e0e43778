"""``orbiter cluster N``: a cluster to try on one machine: N nodes, a Redis, nginx in front.

The nodes are forked as ``--workers`` are (``orbiter/workers.py``: the same
signals, restarts and private ``redis-server`` when no Redis is named), but
each listens on a port of its own on 127.0.0.1, and an ``nginx`` started
here (Debian's ``nginx`` or ``nginx-light``) serves ``--host:--port`` in
front of them, with the configuration ``docs/cluster.md`` explains: a
session's requests to its node (hashed by the SockJS session id or the
Orbited key in the URL, else by client address: SockJS sessions and Orbited
keys work without it, through Redis, so for them it saves the relay; parked
live elements need it), WebSocket upgrades,
nothing buffered, and the nodes trusting its ``X-Forwarded-For``. Its
configuration and logs are in a temporary directory, removed when it stops;
without ``nginx`` on PATH the nodes run alone and their addresses are logged.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from orbiter.config.settings import Config
from orbiter.workers import (
    PrivateRedis,
    Supervisor,
    WorkersRefused,
    engine_for_workers,
    reserve_port,
)

log = logging.getLogger("orbiter.cluster")

_NGINX_CONF = """\
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
daemon off;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      '';
    }}
    # The node of a request: by its session where it has one (SockJS sessions, the TCP
    # proxy's, an Orbited 0.3 key), so a session's requests meet on its node whatever
    # address each comes from; else by client address (parked live elements, keys).
    # SockJS sessions and Orbited keys work without it (through Redis): for them it
    # saves the relay. Parked live elements need it.
    map $uri $orbiter_affinity {{
        "~^(?:{sockjs}|/tcp/sockjs)/[^/]+/(?<sid>[^/]+)/" $sid;
        "~^/(?<key>[^/|]*\\|[^,/]+,[^,/]+)," $key;
        default $remote_addr;
    }}
    upstream orbiter {{
        hash $orbiter_affinity consistent;
{servers}
        keepalive 64;
        keepalive_timeout 5s;
    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://orbiter;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 75s;
            proxy_send_timeout 75s;
            client_max_body_size {body};
        }}
    }}
}}
"""


class Nginx:
    """An ``nginx`` in front of the nodes, its files in a temporary directory."""

    def __init__(
        self, binary: str, listen: str, ports: list[int], max_body: int, sockjs_prefix: str
    ) -> None:
        self._binary = binary
        self._dir = Path(tempfile.mkdtemp(prefix="orbiter-nginx-"))
        self._dir.chmod(0o755)  # its workers may run as another user
        servers = "\n".join(f"        server 127.0.0.1:{port};" for port in ports)
        conf = _NGINX_CONF.format(
            dir=self._dir,
            servers=servers,
            listen=listen,
            body=max_body,
            sockjs=re.escape(sockjs_prefix),
        )
        self.conf = self._dir / "nginx.conf"
        self.conf.write_text(conf)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it; :class:`WorkersRefused` with nginx's complaint if its config is refused."""
        test = subprocess.run(
            [self._binary, "-t", "-q", "-p", str(self._dir), "-c", str(self.conf)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if test.returncode != 0:
            raise WorkersRefused(f"nginx refused its configuration: {test.stderr.strip()}")
        self.process = subprocess.Popen(
            [self._binary, "-p", str(self._dir), "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # stopped by this process, after the signal reached it
        )

    def failed(self) -> str | None:
        """Why nginx is no longer running (its error log's last line), or None."""
        if self.process is None or self.process.poll() is None:
            return None
        lines = (self._dir / "error.log").read_text(errors="replace").strip().splitlines()
        return f"nginx exited ({lines[-1] if lines else 'status ' + str(self.process.returncode)})"

    def stop(self) -> None:
        """SIGQUIT (graceful), killed if it has not stopped within 10 s; its files removed."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(3)  # SIGQUIT: finish the requests under way
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self._dir, ignore_errors=True)


def _wait_listening(ports: list[int], timeout: float = 30.0) -> None:
    """Return once every node accepts connections (or after ``timeout``: nginx then
    answers 502 for those that do not yet)."""
    deadline = time.monotonic() + timeout
    waiting = list(ports)
    while waiting and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", waiting[0]), timeout=1.0).close()
            waiting.pop(0)
        except OSError:
            time.sleep(0.05)


def run_cluster(config: Config, nodes: int, *, engine_configured: bool) -> int:
    """Run ``nodes`` nodes on one Redis with nginx on ``config``'s host and port in front;
    the exit status. :class:`WorkersRefused` when it cannot."""
    if nodes < 1:
        raise WorkersRefused(f"orbiter cluster needs at least 1 node, not {nodes}")
    if config.port == 0:
        raise WorkersRefused("orbiter cluster needs a port for nginx to listen on (--port)")
    url = engine_for_workers(config, nodes, engine_configured=engine_configured)
    nginx_binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    front = f"{config.host}:{config.port}"
    private: PrivateRedis | None = None
    if url is None:
        private = PrivateRedis(config.engine.data_dir or ".", sync=config.engine.sync)
        private.start()
        url = private.url
    trusted = tuple(dict.fromkeys((*config.trusted_proxies, "127.0.0.1")))
    node_config = replace(config, host="127.0.0.1", trusted_proxies=trusted)
    try:
        with contextlib.ExitStack() as reserved:
            ports = [
                reserved.enter_context(reserve_port("127.0.0.1", 0)).getsockname()[1]
                for _ in range(nodes)
            ]
            nginx: Nginx | None = None
            if nginx_binary is not None:
                listen = f"[{config.host}]:{config.port}" if ":" in config.host else front
                nginx = Nginx(
                    nginx_binary, listen, ports, config.limits.max_http_body, config.sockjs.prefix
                )
            supervisor = Supervisor(node_config, ports, url)

            def started() -> None:
                _wait_listening(ports)
                addresses = ", ".join(f"http://127.0.0.1:{port}" for port in ports)
                if nginx is None:
                    log.warning(
                        "no nginx on PATH (apt install nginx): the %d nodes serve alone at %s",
                        nodes,
                        addresses,
                    )
                    return
                nginx.start()  # its refusal stops the nodes, and is printed
                log.info(
                    "cluster of %d nodes through Redis at %s: nginx on http://%s in front of %s",
                    nodes,
                    url,
                    front,
                    addresses,
                )

            if nginx is None:
                return supervisor.run(started)
            try:  # nginx stops first: no new request goes to a node that is stopping
                return supervisor.run(started, nginx.failed, nginx.stop)
            finally:
                nginx.stop()
    finally:
        if private is not None:
            private.stop()


def cluster_main(config: Config, nodes: int, *, engine_configured: bool) -> int:
    """``orbiter cluster N``: the exit status; a refusal is one line on stderr."""
    try:
        return run_cluster(config, nodes, engine_configured=engine_configured)
    except WorkersRefused as exc:
        print(f"orbiter: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"orbiter: cannot start: {exc}", file=sys.stderr)
        return 1
