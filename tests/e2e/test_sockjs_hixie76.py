"""SockJS over the hixie-76 WebSocket draft, against a real ``orbiter serve``.

aiohttp refuses these handshakes, so the server takes them before aiohttp
sees them (orbiter/transports/sniffing.py); everything else must go on as before.
"""

from __future__ import annotations

import asyncio

import aiohttp

from tests.support.rawhttp import RawConnection, fetch
from tests.support.sockjs_urls import SockJSUrls

TIMEOUT = 5.0
KEYS = {"Sec-WebSocket-Key1": "4 @1  46546xW%0l 1 5", "Sec-WebSocket-Key2": "12998 5 Y3 1  .P00"}
CHALLENGE = b"\xca4\x00\xd8\xa5\x08G\x97,\xd5qZ\xba\xbfC{"


def handshake_headers(origin: str) -> dict[str, str]:
    return {"Connection": "Upgrade", "Upgrade": "WebSocket", "Origin": origin, **KEYS}


async def read_frame(conn: RawConnection) -> bytes:
    async with asyncio.timeout(TIMEOUT):
        frame = await conn.reader.readuntil(b"\xff")
    assert frame[:1] == b"\x00", frame
    return frame[1:-1]


async def open_hixie(url: str, origin: str, *, key3_with_head: bool = False) -> RawConnection:
    path = url.split("/", 3)[3]
    conn = await RawConnection.open(url)
    if key3_with_head:
        lines = [f"GET /{path} HTTP/1.1", f"Host: {conn.host}"]
        lines += [f"{k}: {v}" for k, v in handshake_headers(origin).items()]
        conn.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + b"aaaaaaaa")
        head = await conn.read_head()
    else:
        # HAProxy's order: key3 goes out only once the 101 head has come back.
        head = await conn.request("GET", "/" + path, headers=handshake_headers(origin))
        conn.writer.write(b"aaaaaaaa")
    assert head.status == 101, head
    assert head.get("sec-websocket-location") == SockJSUrls.ws(url)
    assert head.get("sec-websocket-origin") == origin
    assert head.get("content-length") is None
    assert await conn.read_exactly(16) == CHALLENGE
    return conn


async def test_haproxy_order_echo_and_closing_handshake(sockjs: SockJSUrls) -> None:
    url = SockJSUrls.session(sockjs.echo) + "/websocket"
    conn = await open_hixie(url, sockjs.server.url)
    try:
        assert await read_frame(conn) == b"o"
        conn.writer.write(b'\x00["a","\xc5\xbc\xc3\xb3\xc5\x82w"]\xff\x00[]\xff')
        assert await read_frame(conn) == 'a["a","żółw"]'.encode()
        conn.writer.write(b"\xff\x00")
        async with asyncio.timeout(TIMEOUT):
            assert await conn.reader.read() == b"\xff\x00"  # the server's half, then EOF
    finally:
        await conn.close()


async def test_key3_sent_with_the_head_as_browsers_do(sockjs: SockJSUrls) -> None:
    url = SockJSUrls.session(sockjs.echo) + "/websocket"
    conn = await open_hixie(url, sockjs.server.url, key3_with_head=True)
    try:
        assert await read_frame(conn) == b"o"
        conn.writer.write(b'\x00"single"\xff')
        assert await read_frame(conn) == b'a["single"]'
    finally:
        await conn.close()


async def test_the_server_closing_sends_its_close_frame_then_the_closing_handshake(
    sockjs: SockJSUrls,
) -> None:
    conn = await open_hixie(SockJSUrls.session(sockjs.close) + "/websocket", sockjs.server.url)
    try:
        assert await read_frame(conn) == b"o"
        assert await read_frame(conn) == b'c[3000,"Go away!"]'
        assert await conn.read_exactly(2) == b"\xff\x00"
        assert await conn.closed_by_server()
    finally:
        await conn.close()


async def test_broken_json_or_a_bad_frame_ends_only_that_connection(sockjs: SockJSUrls) -> None:
    for bad in (b'\x00["a\xff', b"\x07junk"):
        conn = await open_hixie(SockJSUrls.session(sockjs.echo) + "/websocket", sockjs.server.url)
        try:
            assert await read_frame(conn) == b"o"
            conn.writer.write(bad)
            async with asyncio.timeout(TIMEOUT):
                rest = await conn.reader.read()
            assert rest in (b"", b"\xff\x00"), rest
        finally:
            await conn.close()
    other = await open_hixie(SockJSUrls.session(sockjs.echo) + "/websocket", sockjs.server.url)
    await other.close()


async def test_a_malformed_handshake_is_refused_with_the_reason(sockjs: SockJSUrls) -> None:
    url = SockJSUrls.session(sockjs.echo) + "/websocket"
    headers = {**handshake_headers(sockjs.server.url), "Sec-WebSocket-Key1": "12345"}
    head, body = await fetch(url, headers=headers)
    assert head.status == 400
    assert b"spaces" in body


async def test_hixie76_elsewhere_is_refused_by_aiohttp_and_the_server_goes_on(
    sockjs: SockJSUrls,
) -> None:
    for url in (
        sockjs.server.url + "/connection/websocket",
        sockjs.wsoff + "/000/abc/websocket",  # a service without WebSocket
    ):
        head, body = await fetch(url, headers=handshake_headers(sockjs.server.url))
        assert head.status == 400, url
        assert b"Sec-WebSocket-Key1" in body
    async with aiohttp.ClientSession() as http:
        url = SockJSUrls.ws(SockJSUrls.session(sockjs.echo) + "/websocket")
        async with http.ws_connect(url) as ws:
            msg = await ws.receive(TIMEOUT)
            assert msg.data == "o"
        async with http.get(sockjs.echo) as response:
            assert await response.text() == "Welcome to SockJS!\n"


async def test_the_native_service_checks_the_origin(sockjs: SockJSUrls) -> None:
    url = SockJSUrls.session(sockjs.top) + "/websocket"
    head, body = await fetch(url, headers=handshake_headers("http://evil.example"))
    assert head.status == 403
    assert b"evil.example" in body
    conn = await open_hixie(url, sockjs.server.url)
    try:
        assert await read_frame(conn) == b"o"
    finally:
        await conn.close()


async def test_a_head_split_across_packets_is_still_taken(sockjs: SockJSUrls) -> None:
    url = SockJSUrls.session(sockjs.echo) + "/websocket"
    conn = await RawConnection.open(url)
    try:
        lines = [f"GET /{url.split('/', 3)[3]} HTTP/1.1", f"Host: {conn.host}"]
        lines += [f"{k}: {v}" for k, v in handshake_headers(sockjs.server.url).items()]
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode()
        for i in range(0, len(raw), 7):
            conn.writer.write(raw[i : i + 7])
            await conn.writer.drain()
            await asyncio.sleep(0.001)
        head = await conn.read_head()
        assert head.status == 101
        conn.writer.write(b"aaaaaaaa")
        assert await conn.read_exactly(16) == CHALLENGE
    finally:
        await conn.close()


async def test_every_sockjs_mount_speaks_it(sockjs: SockJSUrls) -> None:
    for base in ("/stomp/sockjs", "/tcp/sockjs"):
        url = SockJSUrls.session(sockjs.server.url + base) + "/websocket"
        conn = await open_hixie(url, sockjs.server.url)
        try:
            assert await read_frame(conn) == b"o", base
        finally:
            await conn.close()
