"""``limits.max_message_size`` is counted the same way on every WebSocket route.

A message of exactly the limit (its bytes) is taken, one byte more closes
the connection with 1009: on the native ``/connection/websocket``, on STOMP
over WebSocket (``/stomp``), on the TCP relay (``/tcp``) and on SockJS's
WebSocket. Before issue 18, aiohttp's routes refused a message of exactly
the limit (its bound is exclusive) where the native one took it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import orjson
import pytest

from orbiter.config.settings import Limits
from orbiter.ports import free_port
from tests.support.server import RunningServer
from tests.support.tcp_backends import Echo

LIMIT = 1000
ECHO = free_port()


def test_the_default_is_one_mebibyte() -> None:
    assert Limits().max_message_size == 1_048_576


@pytest.fixture(scope="module")
def srv() -> Iterator[RunningServer]:
    server = RunningServer(
        f'[limits]\nmax_message_size = {LIMIT}\n\n[[tcp.access]]\nto = "127.0.0.1:{ECHO}"\n',
        args=("--sockjs-test-services",),
    )
    yield server
    server.stop()


def ws(srv: RunningServer, path: str) -> str:
    return srv.url.replace("http://", "ws://") + path


async def closed_with(conn: aiohttp.ClientWebSocketResponse) -> int | None:
    async with asyncio.timeout(5):
        while True:
            msg = await conn.receive()
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return conn.close_code


def padded_ping(size: int) -> str:
    empty = '{"id":1,"op":"ping","pad":""}'
    return empty[:-2] + "x" * (size - len(empty)) + '"}'


async def test_native_websocket(srv: RunningServer) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws(srv, "/connection/websocket")) as c,
    ):
        await c.send_str(padded_ping(LIMIT))
        assert (await c.receive_json(timeout=5))["id"] == 1
        await c.send_str(padded_ping(LIMIT + 1))
        assert await closed_with(c) == 1009


def stomp_send(size: int) -> bytes:
    head = b"SEND\ndestination:/topic/size\nreceipt:r\n\n"
    return head + b"x" * (size - len(head) - 1) + b"\x00"


async def test_stomp_over_websocket(srv: RunningServer) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws(srv, "/stomp"), protocols=("v12.stomp",)) as c,
    ):
        await c.send_bytes(b"CONNECT\naccept-version:1.2\nhost:x\n\n\x00")
        assert (await c.receive(timeout=5)).data.startswith("CONNECTED")
        await c.send_bytes(stomp_send(LIMIT))
        assert (await c.receive(timeout=5)).data.startswith("RECEIPT")
        await c.send_bytes(stomp_send(LIMIT + 1))
        assert await closed_with(c) == 1009


async def test_tcp_relay(srv: RunningServer) -> None:
    backend = await Echo(ECHO).start()
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(ws(srv, f"/tcp/127.0.0.1:{ECHO}")) as c,
        ):
            await c.send_bytes(b"y" * LIMIT)
            got = b""
            async with asyncio.timeout(5):
                while len(got) < LIMIT:
                    got += (await c.receive()).data
            await c.send_bytes(b"y" * (LIMIT + 1))
            assert await closed_with(c) == 1009
    finally:
        await backend.stop()


async def test_sockjs_websocket(srv: RunningServer) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws(srv, "/sockjs/echo/000/s1/websocket")) as c,
    ):
        assert (await c.receive(timeout=5)).data == "o"
        await c.send_str(orjson.dumps(["é" * (LIMIT // 2)]).decode())  # UTF-8 bytes counted
        assert (await c.receive(timeout=5)).data.startswith("a[")
        await c.send_str(orjson.dumps(["é" * (LIMIT // 2) + "x"]).decode())
        assert (await c.receive(timeout=5)).data.startswith("c[1009,")
