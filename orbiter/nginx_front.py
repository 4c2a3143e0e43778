"""An ``nginx`` in front of N orbiter nodes: its configuration, its process, its files.

The one owner of that front for ``orbiter cluster N`` (``cluster.py``: routed by
session, on the configured address), ``orbiter bench --nodes N`` (``bench/nodes.py``:
round robin, its access log counting each node's connections) and the tests' round-robin
balancer (``tests/support/nginx_balancer.py``: a log line per request).
:class:`FrontSettings` says what differs between them and :meth:`FrontSettings.render`
writes the configuration text; what they share is written once there: WebSocket
upgrades passed on (``map $http_upgrade``), nothing buffered either way, the client's
``Host`` (port included, which the same-origin check compares) and
``X-Forwarded-For``. :class:`NginxFront` runs it:
Debian's binary found (``/usr/sbin`` is not on every PATH), the configuration checked,
started, waited for until it listens, stopped by its PID; its files (configuration, pid,
logs, nginx's temporary paths) in a temporary directory removed when it stops.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orbiter.lifeline import ending_with_this_process

#: A ``listen`` address or a node: ``host:port``, ``[v6]:port``; nothing nginx would
#: read as more than one word.
_ADDRESS = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]*):[0-9]{1,5}")
#: What an access-log format may not hold: it is written between single quotes.
_BAD_LOG_FORMAT = re.compile(r"['\\\n\r]")


#: How :class:`SessionAffinity` names a request's node (``{sockjs}``: the escaped prefix).
_AFFINITY_MAP = """\
    # The node of a request: by its session where it has one (SockJS sessions, the TCP
    # proxy's, an Orbited 0.3 key), so a session's requests meet on its node whatever
    # address each comes from; else by client address (parked live elements, keys).
    # SockJS sessions and Orbited keys work without it (through Redis): for them it
    # saves the relay. Parked live elements need it.
    map $uri $orbiter_affinity {{
        "~^(?:{sockjs}|/tcp/sockjs)/[^/]+/(?<sid>[^/]+)/" $sid;
        "~^/(?<key>[^/|]*\\|[^,/]+,[^,/]+)," $key;
        default $remote_addr;
    }}"""


class NginxFailed(Exception):
    """nginx refused its configuration, exited, or did not listen; the message says which."""


def find_nginx() -> str | None:
    """The ``nginx`` binary: on PATH, else Debian's ``/usr/sbin`` or ``/sbin``; None if absent."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")


@dataclass(frozen=True)
class SessionAffinity:
    """A request goes to the node of its session: the SockJS session id (under
    ``sockjs_prefix`` or the TCP proxy's ``/tcp/sockjs``) or the Orbited 0.3 key in its
    URL, else its client address (parked live elements come back to their node)."""

    sockjs_prefix: str = "/sockjs"


@dataclass(frozen=True)
class FrontSettings:
    """What one front needs: where it listens, its nodes, and how it spreads requests."""

    #: ``host:port`` (or ``[v6]:port``) nginx listens on.
    listen: str
    #: Each node, ``host:port``.
    upstreams: tuple[str, ...]
    #: None: each request to the next node in turn (round robin).
    affinity: SessionAffinity | None = None
    #: The access log's ``log_format`` (nginx variables, such as ``$upstream_addr``);
    #: None: no access log.
    access_log: str | None = None
    worker_connections: int = 4096
    #: ``worker_rlimit_nofile``: the descriptors nginx may open; None: the inherited limit.
    open_files: int | None = None
    #: The listening socket's ``backlog``; None: nginx's default (511).
    backlog: int | None = None
    #: Seconds a proxied connection may stay silent either way before nginx cuts it.
    proxy_timeout: int = 75
    #: ``client_max_body_size`` in bytes (nginx's default: 1 MiB).
    max_body: int = 1 << 20
    #: Idle connections to the nodes kept per worker (5 s at most) for later requests;
    #: None: a connection per request.
    keepalive: int | None = None
    #: A request whose node cannot be reached goes to the next node; False: it fails
    #: (``proxy_next_upstream off``), so each request lands exactly where its turn says.
    retry_next_node: bool = True

    def __post_init__(self) -> None:
        if not _ADDRESS.fullmatch(self.listen):
            raise ValueError(f"nginx listen address {self.listen!r} is not host:port")
        if not self.upstreams:
            raise ValueError("an nginx front needs at least one node (upstreams is empty)")
        for node in self.upstreams:
            if not _ADDRESS.fullmatch(node) or node.startswith(":"):
                raise ValueError(f"nginx upstream {node!r} is not host:port")
        if self.access_log is not None and (
            not self.access_log.strip() or _BAD_LOG_FORMAT.search(self.access_log)
        ):
            raise ValueError(f"nginx access-log format {self.access_log!r} is empty or has quotes")
        for name in (
            "worker_connections",
            "open_files",
            "backlog",
            "proxy_timeout",
            "max_body",
            "keepalive",
        ):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"nginx front {name} must be at least 1, not {value}")

    def render(self, directory: Path) -> str:
        """The whole ``nginx.conf``, its pid, logs and temporary paths under ``directory``."""
        d = directory
        lines = ["worker_processes 1;"]
        if self.open_files is not None:
            lines.append(f"worker_rlimit_nofile {self.open_files};")
        lines += [
            f"pid {d}/nginx.pid;",
            f"error_log {d}/error.log warn;",
            "daemon off;",
            f"events {{ worker_connections {self.worker_connections}; }}",
            "http {",
        ]
        if self.access_log is None:
            lines.append("    access_log off;")
        else:
            lines.append(f"    log_format front '{self.access_log}';")
            lines.append(f"    access_log {d}/access.log front;")
        lines += [
            f"    client_body_temp_path {d}/body;",
            f"    proxy_temp_path {d}/proxy;",
            f"    fastcgi_temp_path {d}/fastcgi;",
            f"    uwsgi_temp_path {d}/uwsgi;",
            f"    scgi_temp_path {d}/scgi;",
            "    map $http_upgrade $connection_upgrade {",
            "        default upgrade;",
            "        ''      '';",
            "    }",
        ]
        if self.affinity is not None:
            sockjs = re.escape(self.affinity.sockjs_prefix)
            lines.append(_AFFINITY_MAP.format(sockjs=sockjs))
        lines.append("    upstream orbiter {")
        if self.affinity is not None:
            lines.append("        hash $orbiter_affinity consistent;")
        lines += [f"        server {node};" for node in self.upstreams]
        if self.keepalive is not None:
            lines += [f"        keepalive {self.keepalive};", "        keepalive_timeout 5s;"]
        lines.append("    }")
        backlog = "" if self.backlog is None else f" backlog={self.backlog}"
        lines += [
            "    server {",
            f"        listen {self.listen}{backlog};",
            "        location / {",
            "            proxy_pass http://orbiter;",
            "            proxy_http_version 1.1;",
            "            proxy_set_header Upgrade $http_upgrade;",
            "            proxy_set_header Connection $connection_upgrade;",
            "            proxy_set_header Host $http_host;",
            "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
            "            proxy_buffering off;",
            "            proxy_request_buffering off;",
            f"            proxy_read_timeout {self.proxy_timeout}s;",
            f"            proxy_send_timeout {self.proxy_timeout}s;",
            f"            client_max_body_size {self.max_body};",
        ]
        if not self.retry_next_node:
            lines.append("            proxy_next_upstream off;")
        lines += ["        }", "    }", "}", ""]
        return "\n".join(lines)


def _probe_host(listen: str) -> str:
    """Where to connect to reach what listens on ``listen`` (a wildcard: the loopback)."""
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host in ("", "0.0.0.0", "*"):
        return "127.0.0.1"
    return "::1" if host == "::" else host


class NginxFront:
    """One ``nginx`` process serving ``settings``; its files in a temporary directory."""

    def __init__(self, settings: FrontSettings, binary: str) -> None:
        self.settings = settings
        self._binary = binary
        self.directory = Path(tempfile.mkdtemp(prefix="orbiter-nginx-"))
        self.directory.chmod(0o755)  # its worker may run as another user
        self.conf = self.directory / "nginx.conf"
        self.conf.write_text(settings.render(self.directory))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return int(self.settings.listen.rsplit(":", 1)[1])

    @property
    def access_log(self) -> Path:
        """The access log (absent while nothing was logged, or without ``access_log``)."""
        return self.directory / "access.log"

    def start(self, prefix: Sequence[str] = (), timeout: float = 20.0) -> None:
        """Check the configuration, start nginx (``prefix``: a command it runs under, such
        as ``taskset``) and return once it accepts connections; :class:`NginxFailed`
        with nginx's complaint otherwise (the process, if any, stopped)."""
        args = ["-p", str(self.directory), "-c", str(self.conf), "-e", str(self._error_log)]
        test = subprocess.run(
            [self._binary, "-t", "-q", *args], capture_output=True, text=True, timeout=30
        )
        if test.returncode != 0:
            raise NginxFailed(f"nginx refused its configuration: {test.stderr.strip()}")
        with (self.directory / "nginx.out").open("wb") as out:
            self.process = subprocess.Popen(
                [*prefix, self._binary, *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C reaches its owner, which stops it
                preexec_fn=ending_with_this_process(),  # and so does its owner's SIGKILL
            )
        # nginx writes its pid file once its sockets are bound: before it, what answers
        # on the address may be someone else
        address = (_probe_host(self.settings.listen), self.port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                reason = self.failed()
                self._stop_process()
                raise NginxFailed(reason or "nginx exited")
            if self._pid_written():
                with contextlib.suppress(OSError), socket.create_connection(address, 0.5):
                    return
            time.sleep(0.05)
        self._stop_process()
        raise NginxFailed(f"nginx did not listen on {self.settings.listen} in {timeout:.0f} s")

    def _pid_written(self) -> bool:
        assert self.process is not None
        with contextlib.suppress(OSError):
            return (self.directory / "nginx.pid").read_text().strip() == str(self.process.pid)
        return False

    @property
    def _error_log(self) -> Path:
        return self.directory / "error.log"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def failed(self) -> str | None:
        """Why nginx is no longer running (its error log's last line), or None."""
        if self.process is None or self.process.poll() is None:
            return None
        with contextlib.suppress(OSError):
            lines = self._error_log.read_text(errors="replace").strip().splitlines()
            # "2026/12/06 22:55:50 [emerg] 23296#23296: what", its last two what's
            said = [line.split(": ", 1)[-1] for line in lines[-2:]]
            if said:
                return f"nginx exited ({'; '.join(dict.fromkeys(said))})"
        return f"nginx exited (status {self.process.returncode})"

    def _stop_process(self, grace: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGQUIT)  # graceful: requests finish, logs complete
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop(self, grace: float = 10.0) -> None:
        """SIGQUIT (graceful) to its PID, killed if it has not stopped within ``grace`` s;
        its files removed. Read the access log before."""
        self._stop_process(grace)
        shutil.rmtree(self.directory, ignore_errors=True)
