"""The RFC 6455 opening handshake orbiter answers itself: parsing, checks, the 101."""

from __future__ import annotations

import orjson

from orbiter.protocol.websocket_handshake import (
    ASCII_HEADERS,
    accept_value,
    bad_request,
    parse_head,
    preferred_subprotocol,
    refusal,
    switching_protocols,
    undecodable,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="

GOOD = (
    "GET /connection/websocket?token=t%20k&x=1&x=2 HTTP/1.1\r\n"
    "Host: 127.0.0.1:8000\r\n"
    "Upgrade: WebSocket\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    f"Sec-WebSocket-Key: {KEY}\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "X-Forwarded-For: 10.0.0.1\r\n"
    "x-forwarded-for: 10.0.0.2\r\n"
    "Origin: http://app.example\r\n"
    "\r\n"
)


def head_with(*, drop: str = "", add: str = "", line: str = "") -> bytes:
    lines = GOOD.split("\r\n")
    if line:
        lines[0] = line
    lines = [entry for entry in lines if not (drop and entry.lower().startswith(drop.lower()))]
    if add:
        lines.insert(1, add)
    return "\r\n".join(lines).encode()


def test_a_browser_handshake_is_parsed_as_the_guard_reads_requests() -> None:
    head = parse_head(GOOD.encode(), "127.0.0.1")
    assert head is not None
    assert (head.method, head.path, head.version, head.scheme) == (
        "GET",
        "/connection/websocket",
        "1.1",
        "http",
    )
    assert head.query["token"] == "t k"
    assert head.query.getall("x") == ["1", "2"]
    assert head.headers["origin"] == "http://app.example"
    assert head.headers.getall("X-Forwarded-For") == ["10.0.0.1", "10.0.0.2"]
    assert head.remote == "127.0.0.1"
    assert refusal(head) is None


def test_the_accept_value_of_rfc_6455() -> None:
    assert accept_value(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_the_101_answer() -> None:
    head = parse_head(GOOD.encode(), "127.0.0.1")
    assert head is not None
    answer = switching_protocols(head, {"Vary": "Origin"})
    assert answer == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nVary: Origin\r\n\r\n"
    )


def test_malformed_heads_are_not_parsed() -> None:
    for bad in (
        b"GET /connection/websocket HTTP/2\r\n\r\n",
        b"GET connection/websocket HTTP/1.1\r\n\r\n",
        b"GET http://h/connection/websocket HTTP/1.1\r\n\r\n",
        b"GET /connection/websocket HTTP/1.1\r\nNo colon\r\n\r\n",
        b"GET /connection/websocket HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
        b"GET /connection/websocket HTTP/1.1\r\nA: b\x00c\r\n\r\n",
        b"GET /a b HTTP/1.1\r\n\r\n",
        b"GET /connection/websocket\xff HTTP/1.1\r\n\r\n",
        b"GET /connection/websocket?token=\xc3\xa9 HTTP/1.1\r\n\r\n",
    ):
        assert parse_head(bad, "p") is None, bad


def test_what_aiohttp_refuses_is_refused() -> None:
    cases = {
        head_with(line="POST /connection/websocket HTTP/1.1"): "not GET",
        head_with(line="GET /connection/websocket HTTP/1.0"): "HTTP/1.1",
        head_with(drop="Upgrade"): "Upgrade",
        head_with(drop="Upgrade", add="Upgrade: h2c"): "Upgrade",
        head_with(drop="Connection"): "Connection",
        head_with(drop="Connection", add="Connection: keep-alive"): "Connection",
        head_with(drop="Sec-WebSocket-Version"): "Version",
        head_with(drop="Sec-WebSocket-Version", add="Sec-WebSocket-Version: 12"): "Version",
        head_with(drop="Sec-WebSocket-Key"): "Key",
        head_with(drop="Sec-WebSocket-Key", add="Sec-WebSocket-Key: c2hvcnQ="): "Key",
        head_with(drop="Sec-WebSocket-Key", add="Sec-WebSocket-Key: ====="): "Key",
        head_with(add="Content-Length: 5"): "body",
        head_with(add="Transfer-Encoding: chunked"): "body",
    }
    for raw, why in cases.items():
        head = parse_head(raw, "p")
        assert head is not None, raw
        reason = refusal(head)
        assert reason is not None, raw
        assert why in reason, (raw, reason)


def test_drafts_8_and_7_and_a_second_connection_header_are_accepted_as_aiohttp_does() -> None:
    for version in ("8", "7"):
        raw = head_with(drop="Sec-WebSocket-Version", add=f"Sec-WebSocket-Version: {version}")
        head = parse_head(raw, "p")
        assert head is not None
        assert refusal(head) is None
    raw = head_with(drop="Connection", add="Connection: keep-alive\r\nConnection: upgrade")
    head = parse_head(raw, "p")
    assert head is not None
    assert refusal(head) is None


def test_a_header_the_handshake_reads_with_a_non_ascii_byte_is_named() -> None:
    head = parse_head(GOOD.encode(), "p")
    assert head is not None
    assert undecodable(head.headers) is None
    for name in (*ASCII_HEADERS, "sec-websocket-key"):  # named as orbiter spells it
        raw = head_with(drop=name, add=f"{name}: ab").replace(b": ab", b": a\xffb")
        head = parse_head(raw, "p")
        assert head is not None, name
        canonical = next(known for known in ASCII_HEADERS if known.lower() == name.lower())
        assert undecodable(head.headers) == f"the {canonical} header holds a byte that is not ASCII"
    # Headers the handshake does not read may hold any byte (hooks get them as sent).
    for other in ("Cookie: a=\xc3\xa9", "User-Agent: \xff", "X-Custom: caf\xe9"):
        head = parse_head(head_with(add="X: y").replace(b"X: y", other.encode("latin-1")), "p")
        assert head is not None
        assert undecodable(head.headers) is None


def test_a_key_with_a_non_ascii_byte_is_refused_not_raised() -> None:
    raw = GOOD.encode().replace(KEY.encode(), b"\xff" + KEY[1:].encode())
    head = parse_head(raw, "p")
    assert head is not None
    assert refusal(head) == "bad Sec-WebSocket-Key"


def test_the_400_answer_is_whole_and_names_the_problem() -> None:
    answer = bad_request("the Origin header holds a byte that is not ASCII")
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 400 Bad Request"
    assert b"Connection: close" in lines
    assert b"Content-Type: application/json" in lines
    assert f"Content-Length: {len(body)}".encode() in lines
    assert orjson.loads(body) == {
        "error": {"status": 400, "message": "the Origin header holds a byte that is not ASCII"}
    }


def test_the_preferred_subprotocol_is_the_servers_first_that_the_client_offers() -> None:
    supported = ("v12.stomp", "v11.stomp", "v10.stomp")
    assert preferred_subprotocol(["v10.stomp, v11.stomp,v12.stomp"], supported) == "v12.stomp"
    assert preferred_subprotocol(["v10.stomp", "v11.stomp"], supported) == "v11.stomp"
    assert preferred_subprotocol(["mqtt", ""], supported) is None
    assert preferred_subprotocol([], supported) is None
