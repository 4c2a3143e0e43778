"""The HTTP publish fast path of a real server, over raw sockets.

Keep-alive ``POST /api/publish`` connections are served below aiohttp
(orbiter/http/fast_publish.py); anything else on them goes to aiohttp from
its first byte. Each answer here is compared with aiohttp's answer to the
same request (sent on a connection aiohttp serves: one that starts with a
GET), so the fast path is held to "the same as before".
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient

KEY = "k"
LIMIT = 2000
STATS = b"GET /api/stats HTTP/1.1\r\nHost: t\r\nX-API-Key: k\r\n\r\n"


@pytest.fixture(scope="module")
def srv() -> Iterator[RunningServer]:
    server = RunningServer(f'[server]\napi_key = "{KEY}"\n\n[limits]\nmax_http_body = {LIMIT}\n')
    yield server
    server.stop()


def publish(
    body: bytes,
    *,
    key: bytes = b"X-API-Key: k",
    extra: bytes = b"",
    version: bytes = b"HTTP/1.1",
) -> bytes:
    return (
        b"POST /api/publish %s\r\nHost: t\r\n%s\r\nContent-Type: application/json\r\n%s"
        b"Content-Length: %d\r\n\r\n%s" % (version, key, extra, len(body), body)
    )


def message(channel: str, data: object) -> bytes:
    return orjson.dumps({"channel": channel, "data": data})


class Response:
    def __init__(self, version: bytes, status: int, headers: dict[str, str], body: bytes):
        self.version = version
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> dict[str, object]:
        value = orjson.loads(self.body)
        assert isinstance(value, dict)
        return value


def parse_responses(data: bytes) -> list[Response]:
    out = []
    while data:
        end = data.index(b"\r\n\r\n")
        lines = data[:end].decode("latin-1").split("\r\n")
        version, status, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if status.startswith("1") else int(headers["content-length"])
        body = data[end + 4 : end + 4 + length]
        assert len(body) == length, "response cut short"
        out.append(Response(version.encode(), int(status), headers, body))
        data = data[end + 4 + length :]
    return out


def connect(srv: RunningServer) -> socket.socket:
    host, port = srv.url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_responses(sock: socket.socket, count: int, timeout: float = 5.0) -> list[Response]:
    """Read until ``count`` whole final (not 1xx) responses arrived (or the server closed)."""
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        try:
            responses = parse_responses(data)
            if len([r for r in responses if r.status >= 200]) >= count:
                return responses
        except (ValueError, AssertionError, KeyError):
            pass
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"wanted {count} responses, got {data!r}") from None
        if not chunk:
            return parse_responses(data)
        data += chunk


def exchange(
    srv: RunningServer, pieces: list[bytes], count: int, pause: float = 0
) -> list[Response]:
    with connect(srv) as sock:
        for piece in pieces:
            sock.sendall(piece)
            if pause:
                time.sleep(pause)
        return read_responses(sock, count)


def by_aiohttp(srv: RunningServer, request: bytes) -> Response:
    """aiohttp's answer to ``request``: the connection starts with a GET, so aiohttp serves it."""
    stats, answer = exchange(srv, [STATS + request], 2)
    assert stats.status == 200
    return answer


def offsets(srv: RunningServer, channel: str) -> int:
    request = b"GET /api/history?channel=%s HTTP/1.1\r\nHost: t\r\nX-API-Key: k\r\n\r\n"
    (page,) = exchange(srv, [request % channel.encode()], 1)
    offset = page.json()["offset"]
    assert isinstance(offset, int)
    return offset


def counters(srv: RunningServer) -> dict[str, int]:
    (stats,) = exchange(srv, [STATS], 1)
    values = stats.json()["counters"]
    assert isinstance(values, dict)
    return values


async def test_pipelined_publishes_reach_a_subscriber_in_order(srv: RunningServer) -> None:
    sub = await NativeClient.open(srv.ws_url)
    await sub.call("subscribe", channel="fast:order")
    requests = b"".join(publish(message("fast:order", i)) for i in range(200))
    responses = exchange(srv, [requests], 200)
    assert [r.status for r in responses] == [200] * 200
    assert [r.json()["offset"] for r in responses] == list(range(1, 201))
    assert len({r.json()["epoch"] for r in responses}) == 1
    got = [(await sub.next_push())["data"] for _ in range(200)]
    assert got == list(range(200))
    await sub.close()


def test_the_answer_has_what_aiohttp_sends(srv: RunningServer) -> None:
    (fast,) = exchange(srv, [publish(message("fast:head", 1))], 1)
    slow = by_aiohttp(srv, publish(message("fast:head", 2)))
    assert fast.version == slow.version == b"HTTP/1.1"
    assert list(fast.headers) == list(slow.headers)
    assert fast.headers["content-type"] == "application/json"
    assert fast.headers["server"] == slow.headers["server"]
    assert fast.headers["date"].endswith(" GMT")
    assert fast.json()["offset"] == 1
    assert slow.json()["offset"] == 2


def test_a_batched_body(srv: RunningServer) -> None:
    body = orjson.dumps(
        {"publications": [{"channel": "fast:b1", "data": 1}, {"channel": "fast:b2", "data": 2}]}
    )
    (fast,) = exchange(srv, [publish(body)], 1)
    assert fast.status == 200
    results = fast.json()["results"]
    assert isinstance(results, list)
    assert [(r["channel"], r["offset"]) for r in results] == [("fast:b1", 1), ("fast:b2", 1)]


@pytest.mark.parametrize(
    ("body", "key", "status"),
    [
        (b"{not json", b"X-API-Key: k", 400),
        (b"", b"X-API-Key: k", 400),
        (b"[1]", b"X-API-Key: k", 400),
        (b'{"data": 1}', b"X-API-Key: k", 400),
        (b'{"channel": "", "data": 1}', b"X-API-Key: k", 400),
        (b'{"channel": "c"}', b"X-API-Key: k", 400),
        (b'{"publications": []}', b"X-API-Key: k", 400),
        (b'{"publications": [{"channel": "c"}]}', b"X-API-Key: k", 400),
        (b'{"channel": "c", "data": 1}', b"X-API-Key: wrong", 401),
        (b'{"channel": "c", "data": 1}', b"X-Other: k", 401),
        (b'{"channel": "c", "data": 1}', b"Authorization: apikey wrong", 401),
        (b"x" * (LIMIT + 1), b"X-API-Key: k", 413),
        (b"x" * (LIMIT + 1), b"X-API-Key: wrong", 401),
    ],
)
def test_errors_are_aiohttps_errors(
    srv: RunningServer, body: bytes, key: bytes, status: int
) -> None:
    request = publish(body, key=key)
    fast = exchange(srv, [request, request], 2)
    slow = by_aiohttp(srv, request)
    assert [r.status for r in fast] == [status, status]
    assert slow.status == status
    assert fast[0].body == fast[1].body == slow.body
    assert fast[0].headers["content-type"] == slow.headers["content-type"]


def test_the_api_key_in_authorization_is_taken(srv: RunningServer) -> None:
    (fast,) = exchange(srv, [publish(message("fast:auth", 1), key=b"Authorization: apikey  k ")], 1)
    assert fast.status == 200


def test_oversized_bodies_are_counted_once_each(srv: RunningServer) -> None:
    before = counters(srv).get("limit_http_body", 0)
    big = publish(b"x" * (LIMIT + 1))
    exchange(srv, [publish(message("fast:big", 1)) + big], 2)
    assert counters(srv).get("limit_http_body", 0) == before + 1


def test_refused_keys_are_counted(srv: RunningServer) -> None:
    before = counters(srv).get("api_key_refused", 0)
    exchange(srv, [publish(message("fast:key", 1), key=b"X-API-Key: no") * 3], 3)
    assert counters(srv)["api_key_refused"] == before + 3


def test_too_many_channels_is_aiohttps_503(start_server: Callable[..., RunningServer]) -> None:
    srv = start_server(f'[server]\napi_key = "{KEY}"\n\n[limits]\nmax_channels = 50\n')
    requests = [publish(message(f"fast:many{i}", i)) for i in range(60)]
    fast = exchange(srv, [b"".join(requests)], 60)
    refused = [i for i, r in enumerate(fast) if r.status == 503]
    assert refused, "max_channels = 50 was never reached"
    slow = by_aiohttp(srv, requests[refused[0]])
    assert slow.status == 503
    first = fast[refused[0]]
    assert first.body == slow.body
    assert first.headers["retry-after"] == slow.headers["retry-after"] == "5"
    assert srv.wait_for_log(f"fast:many{refused[0]}")


def test_a_connection_mixing_requests_answers_all_in_order(srv: RunningServer) -> None:
    pieces = [
        publish(message("fast:mix", 1)),
        STATS,
        publish(message("fast:mix", 2)),
        b"GET /api/nothing HTTP/1.1\r\nHost: t\r\n\r\n",
        publish(message("fast:mix", 3)),
    ]
    responses = exchange(srv, [b"".join(pieces)], 5)
    assert [r.status for r in responses] == [200, 200, 200, 404, 200]
    assert "connections" in responses[1].json()
    assert [responses[i].json()["offset"] for i in (0, 2, 4)] == [1, 2, 3]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /api/publish HTTP/1.1\r\nHost: t\r\nX-API-Key: k\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n",
        publish(b"%s", version=b"HTTP/1.0"),
        publish(b"%s", extra=b"Expect: 100-continue\r\n"),
        publish(b"%s", extra=b"X-Odd:  spaced\t\r\n  folded\r\n"),
    ],
    ids=["chunked", "HTTP/1.0", "expect", "obs-fold"],
)
def test_odd_requests_go_to_aiohttp_and_still_work(
    srv: RunningServer, request_bytes: bytes
) -> None:
    channel = f"fast:odd{abs(hash(request_bytes))}"
    body = message(channel, 1)
    if b"chunked" in request_bytes:
        request = request_bytes % (len(body), body)
    else:
        request = request_bytes.replace(b"Content-Length: 2", b"Content-Length: %d" % len(body))
        request = request.replace(b"%s", body)
    pieces = [publish(message(channel, 0)), request]
    responses = exchange(srv, [b"".join(pieces)], 2)
    statuses = [r.status for r in responses if r.status != 100]
    if b"folded" in request:
        assert statuses == [200, 400]  # aiohttp refuses obs-fold, as before
    else:
        assert statuses == [200, 200]
        assert offsets(srv, channel) == 2


def test_a_body_in_many_segments(srv: RunningServer) -> None:
    body = message("fast:segments", "y" * 1500)
    request = publish(body)
    head = len(request) - len(body)
    pieces = [request[:head]] + [request[i : i + 50] for i in range(head, len(request), 50)]
    (response,) = exchange(srv, pieces, 1, pause=0.002)
    assert response.status == 200
    assert offsets(srv, "fast:segments") == 1


def test_a_large_body_in_many_reads(start_server: Callable[..., RunningServer]) -> None:
    srv = start_server(f'[server]\napi_key = "{KEY}"\n\n[limits]\nmax_http_body = 4000000\n')
    request = publish(message("fast:large", "y" * 2_000_000)) + publish(message("fast:large", 2))
    pieces = [request[i : i + 16384] for i in range(0, len(request), 16384)]
    responses = exchange(srv, pieces, 2)
    assert [r.json()["offset"] for r in responses] == [1, 2]


def test_a_head_byte_by_byte(srv: RunningServer) -> None:
    request = publish(message("fast:bytes", 1)) * 2
    responses = exchange(srv, [bytes([b]) for b in request], 2, pause=0.0005)
    assert [r.json()["offset"] for r in responses] == [1, 2]


def test_a_client_closing_mid_body_publishes_nothing(srv: RunningServer) -> None:
    request = publish(message("fast:cut", 1))
    with connect(srv) as sock:
        sock.sendall(publish(message("fast:cut", 0)) + request[:-5])
        assert read_responses(sock, 1)[0].status == 200
    time.sleep(0.2)
    assert offsets(srv, "fast:cut") == 1
    (after,) = exchange(srv, [publish(message("fast:cut", 2))], 1)
    assert after.json()["offset"] == 2


def test_a_half_closed_client_gets_its_answers(srv: RunningServer) -> None:
    with connect(srv) as sock:
        sock.sendall(publish(message("fast:half", 1)) * 3)
        sock.shutdown(socket.SHUT_WR)
        responses = read_responses(sock, 3)
        assert sock.recv(10) == b""
    assert [r.json()["offset"] for r in responses] == [1, 2, 3]


def test_connection_close_is_answered_then_closed(srv: RunningServer) -> None:
    request = publish(message("fast:close", 1), extra=b"Connection: close\r\n")
    with connect(srv) as sock:
        sock.sendall(request + publish(message("fast:close", 2)))
        responses = read_responses(sock, 2)
        assert sock.recv(10) == b""
    assert len(responses) == 1
    assert responses[0].headers["connection"] == "close"
    assert offsets(srv, "fast:close") == 1


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=12), st.data())
def test_random_splits_give_the_same_answers(
    srv: RunningServer, cuts: list[int], data: st.DataObject
) -> None:
    channel = f"fast:split{time.monotonic_ns()}"
    requests = [publish(message(channel, i)) for i in range(4)]
    requests.insert(data.draw(st.integers(0, 4)), STATS)
    stream = b"".join(requests)
    points = sorted({c % len(stream) for c in cuts} - {0})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    responses = exchange(srv, pieces, 5, pause=0.001)
    assert [r.status for r in responses] == [200] * 5
    published = [r.json()["offset"] for r in responses if "offset" in r.json()]
    assert published == [1, 2, 3, 4]
