"""orbiter/nginx_front.py: the configuration each front gets, and a real nginx running one."""

from __future__ import annotations

import http.server
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from orbiter.nginx_front import (
    FrontSettings,
    NginxFailed,
    NginxFront,
    SessionAffinity,
    find_nginx,
)
from orbiter.ports import free_port

NGINX = find_nginx()
needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt install nginx)")

UPGRADE = (
    "map $http_upgrade $connection_upgrade",
    "proxy_set_header Upgrade $http_upgrade;",
    "proxy_set_header Connection $connection_upgrade;",
    "proxy_http_version 1.1;",
)


def _settings(**changes: object) -> FrontSettings:
    fields: dict[str, object] = {
        "listen": "127.0.0.1:8000",
        "upstreams": ("127.0.0.1:9001", "127.0.0.1:9002"),
    }
    fields.update(changes)
    return FrontSettings(**fields)  # type: ignore[arg-type]


def test_the_sticky_front_hashes_by_session_and_the_round_robin_one_does_not() -> None:
    sticky = _settings(affinity=SessionAffinity("/my.sock")).render(Path("/tmp/x"))
    plain = _settings().render(Path("/tmp/x"))
    assert "hash $orbiter_affinity consistent;" in sticky
    assert r'"~^(?:/my\.sock|/tcp/sockjs)/[^/]+/(?<sid>[^/]+)/" $sid;' in sticky
    assert r'"~^/(?<key>[^/|]*\|[^,/]+,[^,/]+)," $key;' in sticky
    assert "default $remote_addr;" in sticky
    assert "hash" not in plain
    assert "$orbiter_affinity" not in plain
    for text in (sticky, plain):
        assert "server 127.0.0.1:9001;" in text
        assert "server 127.0.0.1:9002;" in text


@pytest.mark.parametrize("affinity", [None, SessionAffinity()])
def test_every_front_passes_websocket_upgrades_the_host_and_the_client(
    affinity: SessionAffinity | None,
) -> None:
    text = _settings(affinity=affinity).render(Path("/tmp/x"))
    for line in UPGRADE:
        assert line in text
    assert "proxy_set_header Host $http_host;" in text  # the port, for the origin check
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in text
    assert "proxy_buffering off;" in text
    assert "proxy_request_buffering off;" in text


def test_what_differs_between_fronts_is_written_as_asked() -> None:
    default = _settings().render(Path("/tmp/x"))
    assert "access_log off;" in default
    assert "worker_rlimit_nofile" not in default
    assert "worker_connections 4096;" in default
    assert "listen 127.0.0.1:8000;" in default
    assert "proxy_read_timeout 75s;" in default
    assert "proxy_next_upstream" not in default
    assert "keepalive" not in default
    bench = _settings(
        access_log="$upstream_addr",
        worker_connections=100_000,
        open_files=200_000,
        backlog=4096,
        proxy_timeout=3600,
        max_body=5,
        retry_next_node=False,
        keepalive=64,
    ).render(Path("/tmp/x"))
    assert "log_format front '$upstream_addr';" in bench
    assert "access_log /tmp/x/access.log front;" in bench
    assert "worker_rlimit_nofile 200000;" in bench
    assert "worker_connections 100000;" in bench
    assert "listen 127.0.0.1:8000 backlog=4096;" in bench
    assert "proxy_read_timeout 3600s;" in bench
    assert "proxy_send_timeout 3600s;" in bench
    assert "client_max_body_size 5;" in bench
    assert "proxy_next_upstream off;" in bench
    assert "keepalive 64;" in bench


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"upstreams": ()}, "at least one node"),
        ({"upstreams": ("127.0.0.1:1; include /etc/passwd",)}, "is not host:port"),
        ({"upstreams": ("127.0.0.1",)}, "is not host:port"),
        ({"listen": "8000"}, "listen address '8000'"),
        ({"access_log": "it's"}, "access-log format"),
        ({"worker_connections": 0}, "worker_connections must be at least 1"),
        ({"open_files": -1}, "open_files must be at least 1"),
        ({"keepalive": 0}, "keepalive must be at least 1"),
    ],
)
def test_bad_settings_are_refused_by_name(changes: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        _settings(**changes)


@needs_nginx
@pytest.mark.parametrize("affinity", [None, SessionAffinity()])
def test_nginx_accepts_both_configurations(
    affinity: SessionAffinity | None, tmp_path: Path
) -> None:
    assert NGINX is not None
    conf = tmp_path / "nginx.conf"
    conf.write_text(_settings(affinity=affinity, access_log="$upstream_addr").render(tmp_path))
    test = subprocess.run(
        [NGINX, "-t", "-q", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "e.log")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert test.returncode == 0, test.stderr


class _Named(http.server.BaseHTTPRequestHandler):
    """Answers every GET with the port it serves on."""

    def do_GET(self) -> None:
        body = str(self.connection.getsockname()[1]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def backends() -> Iterator[list[int]]:
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Named) for _ in range(2)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    yield [int(s.server_address[1]) for s in servers]
    for server, thread in zip(servers, threads, strict=True):
        server.shutdown()
        server.server_close()
        thread.join(5)


@needs_nginx
def test_a_round_robin_front_alternates_logs_and_leaves_nothing(backends: list[int]) -> None:
    assert NGINX is not None
    settings = _settings(
        listen=f"127.0.0.1:{free_port()}",
        upstreams=tuple(f"127.0.0.1:{port}" for port in backends),
        access_log="$request_uri $upstream_addr",
    )
    front = NginxFront(settings, NGINX)
    try:
        front.start()
        answers = []
        for i in range(4):
            url = f"http://127.0.0.1:{front.port}/r{i}"
            with urllib.request.urlopen(url, timeout=10) as answer:
                answers.append(int(answer.read()))
        assert sorted(set(answers)) == sorted(backends)
        assert answers[0::2] == [answers[0]] * 2
        assert answers[1::2] == [answers[1]] * 2
        assert answers[0] != answers[1]
        pid = front.pid
        assert pid is not None
    finally:
        front.stop()
    assert not Path(f"/proc/{pid}").exists()
    assert not front.directory.exists()


@needs_nginx
def test_a_front_that_cannot_listen_says_why(backends: list[int]) -> None:
    assert NGINX is not None
    taken = f"127.0.0.1:{backends[0]}"  # a backend already listens there
    front = NginxFront(_settings(listen=taken), NGINX)
    try:
        with pytest.raises(
            NginxFailed, match=r"nginx exited \(bind\(\) to .* Address already in use"
        ):
            front.start(timeout=10)
        assert front.pid is None
    finally:
        front.stop()
