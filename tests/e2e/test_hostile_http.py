"""Hostile HTTP requests against a real server: bad header bytes, Expect, Host, Content-Type, keys.

Each refusal is checked by its exact status and message, on aiohttp's
routes and on the sniffed fast paths (a connection whose first request is a
plain ``POST /api/publish`` is served below aiohttp; one that starts with a
GET is aiohttp's), and the server must log no traceback. Requests go over
raw sockets, so any byte can be sent.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from tests.support.server import RunningServer

KEY = "s3cret-Key"
LIMIT = 4096
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Response:
    status: int
    head: bytes
    body: bytes

    def message(self) -> str:
        """The JSON error's message."""
        message: str = orjson.loads(self.body)["error"]["message"]
        return message


class Conn:
    """One raw connection to the server, with a timeout on every read."""

    def __init__(self, srv: RunningServer) -> None:
        host, port = srv.url.removeprefix("http://").rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        self.buffer += chunk

    def read_response(self) -> Response:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Response(status, head, body)

    def close(self) -> None:
        self.sock.close()


def http(
    method: bytes,
    path: bytes,
    *headers: bytes,
    body: bytes | None = None,
    host: bytes = b"127.0.0.1",
) -> bytes:
    """A request; ``Content-Length`` is added when there is a body."""
    lines = [b"%s %s HTTP/1.1" % (method, path), b"Host: " + host, *headers]
    if body is not None:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def publish(*headers: bytes, body: bytes | None = None, host: bytes = b"127.0.0.1") -> bytes:
    """A publish as the fast path takes it (given fitting headers)."""
    if body is None:
        body = orjson.dumps({"channel": "hostile:x", "data": 1})
    return http(b"POST", b"/api/publish", *headers, body=body, host=host)


JSON = b"Content-Type: application/json"
GOOD_KEY = b"X-API-Key: " + KEY.encode()


def exchange(srv: RunningServer, *requests: bytes, via_aiohttp: bool = False) -> list[Response]:
    """Send ``requests`` on one connection and read their answers.

    ``via_aiohttp``: first a GET, so the connection is aiohttp's throughout.
    """
    conn = Conn(srv)
    try:
        if via_aiohttp:
            conn.send(http(b"GET", b"/api/nothing"))
            assert conn.read_response().status == 404
        answers = []
        for request in requests:
            conn.send(request)
            answers.append(conn.read_response())
        return answers
    finally:
        conn.close()


def one(srv: RunningServer, request: bytes, *, via_aiohttp: bool = False) -> Response:
    return exchange(srv, request, via_aiohttp=via_aiohttp)[0]


def offset(srv: RunningServer, channel: bytes, *headers: bytes) -> int:
    """The channel's offset now: how many publications it has had."""
    answer = one(srv, http(b"GET", b"/api/history?channel=" + channel, *headers))
    assert answer.status == 200, answer
    result: int = orjson.loads(answer.body)["offset"]
    return result


def assert_clean_log(srv: RunningServer) -> None:
    assert "Traceback" not in srv.log
    assert " 500 " not in srv.log


@pytest.fixture(scope="module")
def keyed() -> Iterator[RunningServer]:
    config = f'[server]\napi_key = "{KEY}"\ntrusted_proxies = ["127.0.0.1"]\n'
    server = RunningServer(config + f"\n[limits]\nmax_http_body = {LIMIT}\n")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def open_server() -> Iterator[RunningServer]:
    server = RunningServer(f"[limits]\nmax_http_body = {LIMIT}\n")
    yield server
    server.stop()


# ---------------------------------------------------------------- bad header bytes

API_ROUTES = [
    (b"GET", b"/api/stats"),
    (b"GET", b"/api/channels"),
    (b"GET", b"/api/history?channel=hostile:x"),
    (b"GET", b"/api/presence?channel=hostile:x"),
    (b"POST", b"/api/publish"),
    (b"POST", b"/api/event"),
]
BAD_BYTES = [b"\xff\xfe", b"k\xc3", b"\xed\xa0\x80", b"s3cret-Key\x80"]


@pytest.mark.parametrize("key", BAD_BYTES)
@pytest.mark.parametrize(("method", "path"), API_ROUTES)
def test_undecodable_api_keys_get_401_on_every_route(
    keyed: RunningServer, method: bytes, path: bytes, key: bytes
) -> None:
    body = b'{"channel": "hostile:x", "keys": "a, 0, /b", "data": 1}' if method == b"POST" else None
    for header in (b"X-API-Key: " + key, b"Authorization: apikey " + key):
        answer = one(keyed, http(method, path, header, JSON, body=body))
        assert answer.status == 401, answer
        assert answer.message() == "missing or wrong API key (send it in the X-API-Key header)"
    assert_clean_log(keyed)


@pytest.mark.parametrize("key", BAD_BYTES)
def test_undecodable_api_keys_get_401_where_the_fast_path_serves(
    keyed: RunningServer, key: bytes
) -> None:
    before = offset(keyed, b"hostile:x", GOOD_KEY)
    # As a connection's first request (the sniffer hands it to aiohttp), and after a
    # publish the fast path served on the same connection.
    answers = exchange(keyed, publish(b"X-API-Key: " + key, JSON))
    answers += exchange(keyed, publish(GOOD_KEY, JSON), publish(b"X-API-Key: " + key, JSON))
    assert [a.status for a in answers] == [401, 200, 401]
    assert "wrong API key" in answers[2].message()
    assert offset(keyed, b"hostile:x", GOOD_KEY) == before + 1
    assert_clean_log(keyed)


@pytest.mark.parametrize(
    "header",
    [
        b"Content-Type: application/\xffjson",
        b"X-Forwarded-For: 10.0.0.\xff",
        b"X-Forwarded-For: \xc3, 127.0.0.1",
        b"Origin: http://\xff.example",
        b"Referer: http://\xfe/",
        b"Authorization: Bearer \xff",
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        (b"POST", b"/api/publish"),
        (b"GET", b"/api/stats"),
        (b"GET", b"/connection/sse?channel=hostile:x"),
        (b"GET", b"/poll?channel=hostile:x&since=0"),
        (b"GET", b"/static/orbiter.js"),
    ],
)
def test_undecodable_bytes_in_other_headers_get_no_500(
    keyed: RunningServer, header: bytes, method: bytes, path: bytes
) -> None:
    body = orjson.dumps({"channel": "hostile:x", "data": 1}) if method == b"POST" else None
    conn = Conn(keyed)
    try:
        conn.send(http(method, path, header, GOOD_KEY, b"Sec-Fetch-Site: cross-site", body=body))
        answer = conn.read_response()
    finally:
        conn.close()
    assert 200 <= answer.status < 500, answer
    assert_clean_log(keyed)


def test_undecodable_host_gets_400(open_server: RunningServer) -> None:
    for request in (publish(JSON, host=b"\xff.localhost"), http(b"GET", b"/", host=b"loc\xc3")):
        answer = one(open_server, request)
        assert answer.status == 400, answer
        assert "is not in server.allowed_hosts" in answer.message()
    assert_clean_log(open_server)


# ---------------------------------------------------------------- Expect: 100-continue


def expect(srv: RunningServer, request: bytes, *, via_aiohttp: bool) -> tuple[Conn, Response]:
    """Send a head that asks ``Expect: 100-continue`` and read the first answer (no body yet)."""
    conn = Conn(srv)
    if via_aiohttp:
        conn.send(http(b"GET", b"/api/nothing"))
        assert conn.read_response().status == 404
    conn.send(request)
    return conn, conn.read_response()


def expect_head(length: int, *headers: bytes, path: bytes = b"/api/publish") -> bytes:
    head = [b"POST %s HTTP/1.1" % path, b"Host: 127.0.0.1", b"Expect: 100-continue", *headers]
    return b"\r\n".join([*head, b"Content-Length: %d" % length]) + b"\r\n\r\n"


@pytest.mark.parametrize("via_aiohttp", [False, True])
@pytest.mark.parametrize("path", [b"/api/publish", b"/api/event"])
def test_an_oversize_expect_gets_413_before_the_upload(
    keyed: RunningServer, via_aiohttp: bool, path: bytes
) -> None:
    conn, answer = expect(
        keyed, expect_head(LIMIT + 1, GOOD_KEY, JSON, path=path), via_aiohttp=via_aiohttp
    )
    conn.close()
    assert answer.status == 413, answer
    assert answer.message() == (
        f"request body is larger than the limit of {LIMIT} bytes (limits.max_http_body)"
    )
    assert_clean_log(keyed)


@pytest.mark.parametrize("via_aiohttp", [False, True])
def test_an_expect_within_the_limit_gets_100_continue_then_its_answer(
    keyed: RunningServer, via_aiohttp: bool
) -> None:
    data = b'"' + b"x" * 100 + b'"'
    body = b'{"channel": "hostile:expect", "data": ' + data + b"}"
    body += b" " * (LIMIT - len(body))  # exactly the limit
    before = offset(keyed, b"hostile:expect", GOOD_KEY)
    conn, answer = expect(keyed, expect_head(LIMIT, GOOD_KEY, JSON), via_aiohttp=via_aiohttp)
    try:
        assert answer.status == 100, answer
        conn.send(body)
        final = conn.read_response()
    finally:
        conn.close()
    assert final.status == 200, final
    assert offset(keyed, b"hostile:expect", GOOD_KEY) == before + 1


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ((JSON,), 401, "missing or wrong API key"),
        ((b"X-API-Key: s3cret", JSON), 401, "missing or wrong API key"),
    ],
)
def test_an_expect_without_the_key_gets_401_before_the_upload(
    keyed: RunningServer, headers: tuple[bytes, ...], status: int, message: str
) -> None:
    conn, answer = expect(keyed, expect_head(100, *headers), via_aiohttp=False)
    conn.close()
    assert answer.status == status, answer
    assert message in answer.message()


def test_an_open_server_refuses_a_foreign_expect_before_the_upload(
    open_server: RunningServer,
) -> None:
    conn, answer = expect(
        open_server, expect_head(10, b"Content-Type: text/plain"), via_aiohttp=True
    )
    conn.close()
    assert answer.status == 415, answer
    assert "Content-Type: application/json" in answer.message()
    head = expect_head(10, JSON).replace(b"Host: 127.0.0.1", b"Host: rebound.example")
    conn, answer = expect(open_server, head, via_aiohttp=False)
    conn.close()
    assert answer.status == 400, answer
    assert answer.message().startswith("Host 'rebound.example' is not in server.allowed_hosts")
    head = expect_head(10, JSON).replace(b"100-continue", b"x")
    conn, answer = expect(open_server, head, via_aiohttp=True)
    conn.close()
    assert answer.status == 417, answer
    assert_clean_log(open_server)


SOCKJS_SENDS = [
    b"/sockjs/000/%s/xhr_send",
    b"/sockjs/000/%s/jsonp_send?c=cb",
    b"/stomp/sockjs/000/%s/xhr_send",
    b"/tcp/sockjs/000/%s/xhr_send",
]


@pytest.mark.parametrize("via_aiohttp", [False, True])
@pytest.mark.parametrize("path", SOCKJS_SENDS)
def test_an_oversize_expect_to_sockjs_gets_413_before_the_upload(
    open_server: RunningServer, via_aiohttp: bool, path: bytes
) -> None:
    head = expect_head(LIMIT + 1, path=path % b"nosuch")
    conn, answer = expect(open_server, head, via_aiohttp=via_aiohttp)
    conn.close()
    assert answer.status == 413, answer
    assert answer.body == b"Payload too large (at most %d bytes)." % LIMIT
    assert_clean_log(open_server)


@pytest.mark.parametrize("path", SOCKJS_SENDS)
def test_a_sockjs_expect_within_the_limit_gets_100_continue_then_its_answer(
    open_server: RunningServer, path: bytes
) -> None:
    session = os.urandom(6).hex().encode()
    opened = one(open_server, http(b"POST", path.split(b"%s")[0] + session + b"/xhr", body=b""))
    assert opened.body == b"o\n", opened
    body = b'["' + b"x" * 10 + b'"]'
    body += b" " * (LIMIT - len(body))  # exactly the limit
    conn, answer = expect(open_server, expect_head(LIMIT, path=path % session), via_aiohttp=False)
    try:
        assert answer.status == 100, answer
        conn.send(body)
        final = conn.read_response()
    finally:
        conn.close()
    assert final.status in (200, 204), final  # jsonp_send answers "ok"
    assert_clean_log(open_server)


def test_a_sockjs_expect_with_a_foreign_host_or_expectation_gets_no_100(
    open_server: RunningServer,
) -> None:
    head = expect_head(10, path=b"/sockjs/000/x/xhr_send")
    conn, answer = expect(
        open_server, head.replace(b"Host: 127.0.0.1", b"Host: rebound.example"), via_aiohttp=False
    )
    conn.close()
    assert answer.status == 400, answer
    assert answer.message().startswith("Host 'rebound.example' is not in server.allowed_hosts")
    conn, answer = expect(open_server, head.replace(b"100-continue", b"x"), via_aiohttp=True)
    conn.close()
    assert answer.status == 417, answer
    assert answer.body == b"unknown Expect: 'x'"
    assert_clean_log(open_server)


# ---------------------------------------------------------------- Host allow-list

REFUSED_HOST = "Host 'rebound.example:80' is not in server.allowed_hosts"


def websocket_handshake(host: bytes, *headers: bytes) -> bytes:
    key = base64.b64encode(os.urandom(16))
    return http(
        b"GET",
        b"/connection/websocket",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Key: " + key,
        b"Sec-WebSocket-Version: 13",
        *headers,
        host=host,
    )


EVERY_ROUTE = [
    publish(JSON, host=b"rebound.example:80"),
    http(b"POST", b"/api/event", JSON, body=b"{}", host=b"rebound.example:80"),
    http(b"GET", b"/api/stats", host=b"rebound.example:80"),
    http(b"GET", b"/", host=b"rebound.example:80"),
    http(b"GET", b"/static/orbiter.js", host=b"rebound.example:80"),
    http(b"GET", b"/connection/sse?channel=chat:x", host=b"rebound.example:80"),
    http(b"GET", b"/poll?channel=chat:x&since=0", host=b"rebound.example:80"),
    http(b"GET", b"/sockjs/info", host=b"rebound.example:80"),
    http(b"GET", b"/no/such/route", host=b"rebound.example:80"),
    websocket_handshake(b"rebound.example:80"),
    # DNS rebinding: the page's origin is the foreign Host itself.
    websocket_handshake(b"rebound.example:80", b"Origin: http://rebound.example"),
    http(
        b"GET",
        b"/connection/sse?channel=chat:x",
        b"Origin: http://rebound.example",
        host=b"rebound.example:80",
    ),
]


@pytest.mark.parametrize("request_bytes", EVERY_ROUTE)
def test_an_open_server_refuses_foreign_hosts_on_every_route(
    open_server: RunningServer, request_bytes: bytes
) -> None:
    for via_aiohttp in (False, True):
        answer = one(open_server, request_bytes, via_aiohttp=via_aiohttp)
        assert answer.status == 400, answer
        assert answer.message() == (
            f"{REFUSED_HOST} (running open, with no API key and no auth, orbiter answers "
            "only its own address and localhost names)"
        )
    assert_clean_log(open_server)


def test_a_fast_path_connection_hands_later_foreign_requests_to_the_checks(
    open_server: RunningServer,
) -> None:
    """The fast path judges every head of a connection, not only its first."""
    before = offset(open_server, b"hostile:x")
    answers = exchange(
        open_server,
        publish(JSON),
        publish(JSON, host=b"rebound.example"),
    )
    answers += exchange(open_server, publish(JSON), publish(b"Content-Type: text/plain"))
    assert [a.status for a in answers] == [200, 400, 200, 415]
    assert answers[1].message().startswith("Host 'rebound.example' is not in")
    assert "'text/plain'" in answers[3].message()
    assert offset(open_server, b"hostile:x") == before + 2


@pytest.mark.parametrize(
    "host", [b"localhost", b"LOCALHOST:1234", b"app.localhost:3000", b"127.0.0.1:9", b"[::1]:80"]
)
def test_an_open_server_answers_its_address_and_localhost_names(
    open_server: RunningServer, host: bytes
) -> None:
    assert one(open_server, publish(JSON, host=host)).status == 200
    assert one(open_server, http(b"GET", b"/api/stats", host=host)).status == 200
    conn = Conn(open_server)
    try:
        conn.send(websocket_handshake(host))
        assert conn.read_response().status == 101
    finally:
        conn.close()


@pytest.mark.parametrize("host", [b"localhost.evil.example", b"127.0.0.2", b"10.0.0.1:80"])
def test_an_open_server_refuses_near_misses(open_server: RunningServer, host: bytes) -> None:
    for request in (publish(JSON, host=host), http(b"GET", b"/api/stats", host=host)):
        assert one(open_server, request).status == 400


def test_the_address_given_on_the_command_line_is_allowed() -> None:
    srv = RunningServer(args=("--host", "127.0.0.2"))
    try:
        assert srv.url.startswith("http://127.0.0.2:")
        for host in (b"127.0.0.2:1", b"localhost"):
            assert one(srv, publish(JSON, host=host)).status == 200, host
        assert one(srv, publish(JSON, host=b"127.0.0.3")).status == 400
    finally:
        srv.stop()


def test_an_explicit_list_applies_in_every_mode(
    start_server: Callable[..., RunningServer],
) -> None:
    srv = start_server(
        f'[server]\napi_key = "{KEY}"\nallowed_hosts = ["push.example", ".apps.example"]\n'
    )
    for host, status in [
        (b"push.example:8000", 200),
        (b"apps.example", 200),
        (b"a.b.apps.example", 200),
        (b"localhost", 400),
        (b"127.0.0.1", 400),
        (b"x.push.example", 400),
        (b"evilapps.example", 400),
    ]:
        for request in (
            publish(GOOD_KEY, JSON, host=host),
            http(b"GET", b"/api/stats", GOOD_KEY, host=host),
        ):
            answer = one(srv, request)
            assert answer.status == status, (host, answer)
            if status == 400:
                shown = host.decode()
                assert answer.message() == f"Host {shown!r} is not in server.allowed_hosts"
    counters = orjson.loads(
        one(srv, http(b"GET", b"/api/stats", GOOD_KEY, host=b"push.example")).body
    )
    assert counters["counters"]["host_refused"] == 8


def test_with_a_key_any_host_is_answered(keyed: RunningServer) -> None:
    for request in (
        publish(GOOD_KEY, JSON, host=b"push.example"),
        http(b"GET", b"/api/stats", GOOD_KEY, host=b"rebound.example"),
    ):
        assert one(keyed, request).status == 200


def test_with_auth_and_no_key_any_host_is_answered(
    start_server: Callable[..., RunningServer],
) -> None:
    srv = start_server('[auth]\nsecret = "0123456789abcdef0123456789abcdef"\n')
    assert one(srv, publish(JSON, host=b"push.example")).status == 200
    assert one(srv, http(b"GET", b"/api/stats", host=b"push.example")).status == 200


# ---------------------------------------------------------------- Content-Type on /api POSTs


@pytest.mark.parametrize(
    "content_type",
    [None, b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=x"],
)
@pytest.mark.parametrize("via_aiohttp", [False, True])
@pytest.mark.parametrize("path", [b"/api/publish", b"/api/event"])
def test_an_open_api_takes_only_json_posts(
    open_server: RunningServer, content_type: bytes | None, via_aiohttp: bool, path: bytes
) -> None:
    before = offset(open_server, b"hostile:type")
    headers = () if content_type is None else (b"Content-Type: " + content_type,)
    body = b'{"channel": "hostile:type", "keys": "a, 0, /b", "data": 1}'
    answer = one(open_server, http(b"POST", path, *headers, body=body), via_aiohttp=via_aiohttp)
    assert answer.status == 415, answer
    shown = "none" if content_type is None else repr(content_type.decode())
    assert answer.message() == (
        f"send the body as JSON with 'Content-Type: application/json' (got {shown}); "
        "without server.api_key the API takes no other type"
    )
    assert offset(open_server, b"hostile:type") == before
    assert_clean_log(open_server)


@pytest.mark.parametrize(
    "content_type",
    [b"application/json", b"application/json; charset=utf-8", b"Application/JSON ;charset=UTF-8"],
)
def test_an_open_api_takes_json_with_parameters(
    open_server: RunningServer, content_type: bytes
) -> None:
    for via_aiohttp in (False, True):
        request = publish(b"Content-Type: " + content_type)
        assert one(open_server, request, via_aiohttp=via_aiohttp).status == 200


def test_with_a_key_the_api_takes_any_type(keyed: RunningServer) -> None:
    """A page elsewhere cannot send the key header without a preflight: no type is needed."""
    for via_aiohttp in (False, True):
        answer = one(keyed, publish(GOOD_KEY, b"Content-Type: text/plain"), via_aiohttp=via_aiohttp)
        assert answer.status == 200, answer


# ---------------------------------------------------------------- the API key comparison

NEAR_KEYS = [
    b"X-API-Key:",
    b"X-API-Key: ",
    b"X-API-Key: s3cret",
    b"X-API-Key: s3cret-Ke",
    b"X-API-Key: s3cret-Key1",
    b"X-API-Key: s3cret-Key ignored",
    b"X-API-Key: S3CRET-KEY",
    b"X-API-Key: s3cret-key",
    b"X-API-Key: xs3cret-Key",
    b"Authorization: apikey",
    b"Authorization: apikey s3cret",
    b"Authorization: apikey s3cret-Key1",
    b"Authorization: Bearer s3cret-Key",
    b"Authorization: s3cret-Key",
]


@pytest.mark.parametrize("header", NEAR_KEYS)
def test_near_miss_keys_get_401_on_the_fast_path_and_aiohttp(
    keyed: RunningServer, header: bytes
) -> None:
    before = offset(keyed, b"hostile:x", GOOD_KEY)
    for via_aiohttp in (False, True):
        answer = one(keyed, publish(header, JSON), via_aiohttp=via_aiohttp)
        assert answer.status == 401, (via_aiohttp, answer)
        assert answer.message() == "missing or wrong API key (send it in the X-API-Key header)"
        stats = one(keyed, http(b"GET", b"/api/stats", header), via_aiohttp=via_aiohttp)
        assert stats.status == 401
    # Keep-alive: a refused request after an accepted one on a fast-path connection.
    answers = exchange(keyed, publish(GOOD_KEY, JSON), publish(header, JSON))
    assert [a.status for a in answers] == [200, 401]
    assert offset(keyed, b"hostile:x", GOOD_KEY) == before + 1


def test_the_key_itself_is_taken_both_ways(keyed: RunningServer) -> None:
    for header in (
        GOOD_KEY,
        b"X-API-Key:   " + KEY.encode() + b"  ",
        b"Authorization: ApiKey " + KEY.encode(),
    ):
        for via_aiohttp in (False, True):
            assert one(keyed, publish(header, JSON), via_aiohttp=via_aiohttp).status == 200


# ---------------------------------------------------------------- README examples


def readme_curl_commands() -> list[str]:
    commands = []
    for line in (ROOT / "README.md").read_text().splitlines():
        line = line.strip()
        if line.startswith("curl ") and "/api/" in line:
            commands.append(line)
    return commands


def test_the_readme_curl_commands_work(open_server: RunningServer) -> None:
    commands = readme_curl_commands()
    assert commands, "README.md shows no curl command"
    port = open_server.url.rsplit(":", 1)[1]
    for command in commands:
        command = command.replace("localhost:8000", f"localhost:{port}")
        assert f"localhost:{port}" in command, command
        done = subprocess.run(
            ["bash", "-c", command + " -s -o /dev/null -w '%{http_code}' --max-time 5"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        assert done.stdout == "200", (command, done.stdout, done.stderr)
