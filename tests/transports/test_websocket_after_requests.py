"""A native WebSocket handshake that is not its connection's first request.

A proxy that keeps its upstream connections alive (nginx ``keepalive``) sends
a handshake on a connection that already carried ordinary requests: the
sniffer must read that head again (transports/sniffing.py), with the same
claims, connection limits and ``head_timeout`` as a first head.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import orjson
import pytest
from aiohttp import web

from orbiter.config.settings import config_from_dict
from orbiter.http.app import build_app
from orbiter.node import Node
from orbiter.transports.app_keys import RAW_ROUTERS
from orbiter.transports.departure import NoticingRequestHandler
from orbiter.transports.sniffing import SniffingRunner, begins_reclaimed_head, first_claim
from orbiter.transports.websocket import _HEAD_START

KEY = "k" * 32
TIMEOUT = 5.0
HEALTH = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def handshake() -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        "GET /connection/websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def publish_request(channel: str) -> bytes:
    body = orjson.dumps({"channel": channel, "data": {"n": 1}})
    return (
        b"POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Authorization: apikey %s\r\nContent-Length: %d\r\n\r\n%s"
        % (KEY.encode(), len(body), body)
    )


def masked_text(payload: bytes) -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x81, 0x80 | len(payload))) + mask + masked


async def read_text(reader: asyncio.StreamReader) -> bytes:
    first, second = await reader.readexactly(2)
    assert first == 0x81, first
    n = second & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    return await reader.readexactly(n)


async def read_answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One HTTP answer with a Content-Length body: (head, body)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    body = await asyncio.wait_for(reader.readexactly(length), TIMEOUT)
    return head, body


async def use_websocket(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, node: Node
) -> None:
    """Connect and subscribe through the open WebSocket, then receive a publication."""
    writer.write(masked_text(b'{"id":1,"op":"connect"}'))
    writer.write(masked_text(b'{"id":2,"op":"subscribe","channel":"again"}'))
    ids: list[int] = []
    while len(ids) < 2:
        text = await asyncio.wait_for(read_text(reader), TIMEOUT)
        ids += [orjson.loads(line)["id"] for line in text.split(b"\n")]
    assert ids == [1, 2]
    await node.pubsub.publish("again", {"hello": "there"})
    pushed = orjson.loads(await asyncio.wait_for(read_text(reader), TIMEOUT))
    assert pushed["channel"] == "again", pushed
    assert pushed["data"] == {"hello": "there"}, pushed


@asynccontextmanager
async def serving(
    routes: tuple[web.RouteDef, ...] = (), **limits: object
) -> AsyncIterator[tuple[Node, int]]:
    """An app served as ``orbiter serve`` serves it: sniffer, gate, head timeout (and
    ``routes`` added to it)."""
    config = config_from_dict({"server": {"api_key": KEY}, "limits": limits})
    node = Node(config)
    app = build_app(node)
    app.router.add_routes(routes)
    runner = SniffingRunner(
        app,
        first_claim(app[RAW_ROUTERS]),
        gate=node,
        head_timeout=config.limits.head_timeout,
        handle_signals=False,
        access_log=None,
        keepalive_timeout=config.limits.head_timeout,
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield node, runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(250):
        if condition():
            return
        await asyncio.sleep(0.02)
    assert condition()


def test_the_reclaimed_head_is_the_native_websocket_s() -> None:
    assert begins_reclaimed_head(_HEAD_START)
    assert begins_reclaimed_head(b"GET /conn")  # a head split short: compared on its length
    assert not begins_reclaimed_head(b"GET /health/live HTTP/1.1\r\n")
    assert not begins_reclaimed_head(b"POST")


@pytest.mark.parametrize("before", [1, 2])
async def test_a_handshake_after_ordinary_requests_opens_a_websocket(before: int) -> None:
    async with serving() as (node, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(before):
            writer.write(HEALTH)
            head, _ = await read_answer(reader)
            assert head.startswith(b"HTTP/1.1 200"), head
        writer.write(handshake())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101"), head
        await use_websocket(reader, writer, node)
        writer.close()


async def test_a_handshake_split_before_its_path_is_read_again() -> None:
    async with serving() as (node, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEALTH)
        assert (await read_answer(reader))[0].startswith(b"HTTP/1.1 200")
        whole = handshake()
        writer.write(whole[:6])  # "GET /c": shorter than the reclaimed prefix
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(whole[6:])
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101"), head
        await use_websocket(reader, writer, node)
        writer.close()


async def test_a_handshake_after_a_fast_path_publish_opens_a_websocket() -> None:
    async with serving() as (node, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(publish_request("elsewhere"))
        head, body = await read_answer(reader)
        assert head.startswith(b"HTTP/1.1 200"), head + body
        writer.write(handshake())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101"), head
        await use_websocket(reader, writer, node)
        writer.close()


#: How long the slow route's handler goes on after its whole answer was written.
LINGER = 0.3


#: The request handlers (aiohttp's protocols) the slow route served, in order.
LINGERING: list[NoticingRequestHandler] = []


async def _answered_then_lingers(request: web.Request) -> web.StreamResponse:
    """The whole answer written at once; the handler returns ``LINGER`` s later."""
    assert isinstance(request.protocol, NoticingRequestHandler)
    LINGERING.append(request.protocol)
    response = web.StreamResponse(headers={"Content-Length": "3"})
    await response.prepare(request)
    await response.write(b"ok\n")
    await response.write_eof()
    await asyncio.sleep(LINGER)
    return response


async def test_a_handshake_sent_before_the_last_handler_returned_opens_a_websocket() -> None:
    """A proxy sends its next request as soon as it has the whole answer: aiohttp's
    handler may not have returned yet (nginx's keep-alive under load). The handshake
    waits for it, then is read again as a first head: 101, not 400."""
    slow = (web.get("/answered-then-lingers", _answered_then_lingers),)
    async with serving(slow) as (node, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /answered-then-lingers HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head, body = await read_answer(reader)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert body == b"ok\n", body
        started = asyncio.get_running_loop().time()
        writer.write(handshake())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101"), head + await reader.read(500)
        # (it was held until the handler returned, not served by aiohttp meanwhile)
        assert asyncio.get_running_loop().time() - started >= LINGER * 0.8
        await use_websocket(reader, writer, node)
        writer.close()


async def test_an_ordinary_request_sent_before_the_last_handler_returned_is_served() -> None:
    """A request that is not a handshake, sent while the last handler still runs, is
    aiohttp's as before (pipelined: answered once that handler returns)."""
    slow = (web.get("/answered-then-lingers", _answered_then_lingers),)
    async with serving(slow) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /answered-then-lingers HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert (await read_answer(reader))[0].startswith(b"HTTP/1.1 200")
        writer.write(HEALTH)
        assert (await read_answer(reader))[0].startswith(b"HTTP/1.1 200")
        writer.close()


async def test_what_is_held_behind_a_running_handler_is_bounded() -> None:
    """A read that may begin a handshake is held while the handler runs, but no more
    than 64 KiB of it: past that aiohttp reads it all, as pipelined requests."""
    slow = (web.get("/answered-then-lingers", _answered_then_lingers),)
    async with serving(slow) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /answered-then-lingers HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert (await read_answer(reader))[0].startswith(b"HTTP/1.1 200")
        handler = LINGERING[-1]
        writer.write(b"GET /connection/websocket HTTP/1.1\r\n")
        await until(lambda: len(handler._held) > 0)
        writer.write(b"X-Filler: " + b"f" * 80_000)
        await until(lambda: not handler._held)
        assert handler._unfinished == 1  # (still running: aiohttp took the bytes, not the end)
        head, body = await read_answer(reader)
        assert b" 400 Bad Request\r\n" in head, head + body  # (a head too long)
        writer.close()


async def test_a_handshake_pipelined_behind_a_request_is_refused_clearly() -> None:
    """aiohttp has parsed both heads of the one read: it answers both, the handshake 400."""
    async with serving() as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEALTH + handshake())
        head, _ = await read_answer(reader)
        assert head.startswith(b"HTTP/1.1 200"), head
        head, body = await read_answer(reader)
        assert head.startswith(b"HTTP/1.1 400"), head
        assert b"not pipelined behind another request" in body, body
        writer.close()


async def test_a_handed_back_connection_is_pending_once_then_released() -> None:
    """With room for one connection: the handed-back head counts once while pending,
    and not at all once it is whole (else the session would be refused, 3003)."""
    async with serving(max_connections=1, max_connections_per_ip=1) as (node, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEALTH)
        assert (await read_answer(reader))[0].startswith(b"HTTP/1.1 200")
        assert (node.pending_connections, node.connection_count) == (0, 0)
        whole = handshake()
        writer.write(whole[:40])
        await until(lambda: node.pending_connections == 1)
        assert node.connection_count == 1
        writer.write(whole[40:])
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101"), head
        assert node.pending_connections == 0
        await use_websocket(reader, writer, node)
        assert node.connection_count == 1  # the session only
        writer.close()
        await until(lambda: node.connection_count == 0)
        assert node.pending_connections == 0


async def test_a_handed_back_head_has_head_timeout_to_finish() -> None:
    async with serving(head_timeout=0.5) as (node, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEALTH)
        assert (await read_answer(reader))[0].startswith(b"HTTP/1.1 200")
        writer.write(handshake()[:40])
        head, body = await read_answer(reader)
        assert head.startswith(b"HTTP/1.1 408"), head
        assert b"limits.head_timeout" in body
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        assert (node.pending_connections, node.connection_count) == (0, 0)
        writer.close()
