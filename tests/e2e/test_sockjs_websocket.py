"""SockJS over WebSocket (framed and raw), against a real ``orbiter serve``."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import aiohttp
import pytest

from tests.support.rawhttp import RawConnection, fetch
from tests.support.sockjs_urls import SockJSUrls

TIMEOUT = 5.0


async def receive_text(ws: aiohttp.ClientWebSocketResponse) -> str:
    msg = await ws.receive(TIMEOUT)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    return str(msg.data)


async def receive_close(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    msg = await ws.receive(TIMEOUT)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
    return msg


async def test_plain_get_or_a_rewritten_connection_header_is_refused(sockjs: SockJSUrls) -> None:
    assert (await fetch(sockjs.echo + "/0/0/websocket"))[0].status == 400
    head, body = await fetch(
        sockjs.echo + "/0/0/websocket", headers={"Upgrade": "WebSocket", "Connection": "close"}
    )
    assert head.status == 400
    assert b"Connection" in body


@pytest.mark.parametrize("headers", [{"Upgrade": "WebSocket", "Connection": "Upgrade"}, {}])
async def test_websocket_url_allows_only_get(sockjs: SockJSUrls, headers: dict[str, str]) -> None:
    head, body = await fetch(sockjs.echo + "/0/0/websocket", "POST", headers=headers)
    assert head.status == 405
    assert head.get("content-type") is None
    assert head.get("allow")
    assert body == b""


async def test_handshake_headers(sockjs: SockJSUrls) -> None:
    url = SockJSUrls.session(sockjs.echo) + "/websocket"
    key = "x3JJHMbDL1EzLkh9GBhXDw=="
    conn = await RawConnection.open(url)
    try:
        head = await conn.request(
            "GET",
            "/" + url.split("/", 3)[3],
            headers={
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": key,
            },
        )
    finally:
        await conn.close()
    accept = base64.b64encode(
        hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    ).decode()
    assert head.status == 101
    assert head.get("sec-websocket-accept") == accept == "HSmrc0sMlYUkAGmm5OPpG2HaGWk="
    assert (head.get("connection") or "").lower() == "upgrade"
    assert (head.get("upgrade") or "").lower() == "websocket"
    assert head.get("content-length") is None


async def test_framed_echo_ignores_empty_frames(sockjs: SockJSUrls) -> None:
    url = SockJSUrls.ws(SockJSUrls.session(sockjs.echo) + "/websocket")
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        assert await receive_text(ws) == "o"
        await ws.send_str("")
        await ws.send_str("[]")
        await ws.send_str('["a"]')
        assert await receive_text(ws) == 'a["a"]'
        await ws.send_str('"single"')
        assert await receive_text(ws) == 'a["single"]'


async def test_framed_close_sends_the_close_frame_then_closes(sockjs: SockJSUrls) -> None:
    url = SockJSUrls.ws(SockJSUrls.session(sockjs.close) + "/websocket")
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        assert await receive_text(ws) == "o"
        assert await receive_text(ws) == 'c[3000,"Go away!"]'
        await receive_close(ws)


async def test_websocket_sessions_may_share_an_id(sockjs: SockJSUrls) -> None:
    url = SockJSUrls.ws(SockJSUrls.session(sockjs.echo) + "/websocket")
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url) as one, http.ws_connect(url) as two:
            assert await receive_text(one) == "o"
            assert await receive_text(two) == "o"
            await one.send_str('["a"]')
            await two.send_str('["b"]')
            assert await receive_text(one) == 'a["a"]'
            assert await receive_text(two) == 'a["b"]'
        async with http.ws_connect(url) as again:
            assert await receive_text(again) == "o"
            await again.send_str('["a"]')
            assert await receive_text(again) == 'a["a"]'


async def test_broken_json_closes_the_websocket_without_a_frame(sockjs: SockJSUrls) -> None:
    url = SockJSUrls.ws(SockJSUrls.session(sockjs.echo) + "/websocket")
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        assert await receive_text(ws) == "o"
        await ws.send_str('["a')
        await receive_close(ws)


async def test_websocket_is_not_offered_by_the_disabled_service(sockjs: SockJSUrls) -> None:
    url = SockJSUrls.ws(SockJSUrls.session(sockjs.wsoff) + "/websocket")
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(url)
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(SockJSUrls.ws(sockjs.wsoff + "/websocket"))


async def test_raw_websocket_echoes_text_as_is(sockjs: SockJSUrls) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(SockJSUrls.ws(sockjs.echo + "/websocket")) as ws,
    ):
        await ws.send_str("Hello world!\uffff")
        assert await receive_text(ws) == "Hello world!\uffff"
        await ws.send_bytes("zażółć".encode())
        assert await receive_text(ws) == "zażółć"


async def test_raw_websocket_close_carries_code_and_reason(sockjs: SockJSUrls) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(SockJSUrls.ws(sockjs.close + "/websocket")) as ws,
    ):
        msg = await receive_close(ws)
        assert ws.close_code == 3000
        assert msg.extra == "Go away!"


async def test_a_websocket_session_ends_with_its_connection(sockjs: SockJSUrls) -> None:
    url = SockJSUrls.session(sockjs.echo)
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(SockJSUrls.ws(url + "/websocket")) as ws:
            assert await receive_text(ws) == "o"
        await asyncio.sleep(0.1)
        # The id names no HTTP session: sending to it finds nothing.
        assert (await fetch(url + "/xhr_send", "POST", body=b'["x"]'))[0].status == 404
