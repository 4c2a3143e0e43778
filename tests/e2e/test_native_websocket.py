"""``/connection/websocket`` below aiohttp: orbiter's own handshake, frames, pings, shutdown."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import signal
import struct
import time
from collections.abc import Callable

import aiohttp
import orjson

from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient

KEY = base64.b64encode(b"0123456789abcdef").decode()


def masked(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    mask = os.urandom(4)
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    head = bytes((first, 0x80 | n)) if n < 126 else struct.pack("!BBH", first, 0x80 | 126, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await reader.readexactly(2)
    n = second & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    return first & 0x0F, await reader.readexactly(n)


async def raw_handshake(
    srv: RunningServer, extra: str = ""
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    host, port = srv.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        (
            f"GET /connection/websocket HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return reader, writer, head


async def test_orbiters_own_handshake_answers_as_rfc_6455_says(server: RunningServer) -> None:
    _reader, writer, head = await raw_handshake(server, f"Origin: {server.url}\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 101 Switching Protocols"
    headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:] if line)}
    assert headers["upgrade"] == "websocket"
    assert headers["connection"] == "upgrade"
    guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
    accept = base64.b64encode(hashlib.sha1(KEY.encode() + guid).digest()).decode()
    assert headers["sec-websocket-accept"] == accept
    assert headers["access-control-allow-origin"] == server.url  # CORS as aiohttp's route sent
    writer.close()


async def test_bad_handshakes_are_answered_by_aiohttp_as_before(server: RunningServer) -> None:
    ws_headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": KEY}
    async with aiohttp.ClientSession() as http:
        async with http.get(server.ws_url) as r:
            assert r.status == 400
            assert "No WebSocket UPGRADE hdr" in await r.text()
        async with http.get(
            server.ws_url, headers={**ws_headers, "Sec-WebSocket-Version": "12"}
        ) as r:
            assert r.status == 400
            assert "Unsupported version: 12" in await r.text()
        bad_key = {**ws_headers, "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "c2hvcnQ="}
        async with http.get(server.ws_url, headers=bad_key) as r:
            assert r.status == 400
            assert "Handshake error" in await r.text()
        async with http.post(server.ws_url, headers=ws_headers) as r:
            assert r.status == 405
        async with http.get(
            server.ws_url, headers={**ws_headers, "Origin": "http://evil.example"}
        ) as r:
            assert r.status == 403
            assert "evil.example" in (await r.json())["error"]["message"]
        # A handshake orbiter does not take below aiohttp (here: HTTP/1.0) is refused, saying so.
        reader, writer = await asyncio.open_connection(*server.url[7:].rsplit(":", 1))
        writer.write(
            (
                "GET /connection/websocket HTTP/1.0\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        answer = await asyncio.wait_for(reader.read(), 5)
        assert answer.startswith(b"HTTP/1.0 400")
        assert b"orbiter did not take this WebSocket handshake" in answer
        writer.close()


async def test_fragments_control_frames_and_order_over_a_raw_socket(server: RunningServer) -> None:
    reader, writer, _ = await raw_handshake(server)
    # A connect split in three fragments, with a ping in between.
    command = orjson.dumps({"id": 1, "op": "connect"})
    writer.write(masked(0x1, command[:5], fin=False))
    writer.write(masked(0x9, b"are you there"))
    writer.write(masked(0x0, command[5:9], fin=False) + masked(0x0, command[9:]))
    assert await read_frame(reader) == (0xA, b"are you there")
    opcode, payload = await read_frame(reader)
    assert opcode == 0x1
    assert orjson.loads(payload)["id"] == 1
    # Forty commands, each its own frame, sent at once: answered in order.
    for i in range(2, 42):
        writer.write(masked(0x1, orjson.dumps({"id": i, "op": "subscribe", "channel": f"o:{i}"})))
    ids: list[int] = []
    while len(ids) < 40:
        opcode, payload = await asyncio.wait_for(read_frame(reader), 5)
        assert opcode == 0x1
        ids += [orjson.loads(line)["id"] for line in payload.split(b"\n")]
    assert ids == list(range(2, 42))
    # Invalid UTF-8 in a text frame: close 1007, and the server closes the connection.
    writer.write(masked(0x1, b"\xff\xfe"))
    opcode, payload = await asyncio.wait_for(read_frame(reader), 5)
    assert opcode == 0x8
    assert struct.unpack("!H", payload[:2])[0] == 1007
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_a_protocol_error_closes_with_1002_and_a_client_close_is_answered(
    server: RunningServer,
) -> None:
    reader, writer, _ = await raw_handshake(server)
    writer.write(bytes((0x81, 0x02)) + b"hi")  # not masked
    opcode, payload = await asyncio.wait_for(read_frame(reader), 5)
    assert (opcode, struct.unpack("!H", payload[:2])[0]) == (0x8, 1002)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()

    reader, writer, _ = await raw_handshake(server)
    writer.write(masked(0x8, struct.pack("!H", 1000) + b"bye"))
    assert await asyncio.wait_for(read_frame(reader), 5) == (0x8, struct.pack("!H", 1000) + b"bye")
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


PINGS = """
[session]
ping_interval = 0.4
pong_timeout = 0.4
"""


async def test_idle_clients_are_pinged_and_silent_ones_cut(
    start_server: Callable[..., RunningServer],
) -> None:
    srv = start_server(PINGS)
    healthy = await NativeClient.open(srv.ws_url)  # reads, so aiohttp answers pings
    async with aiohttp.ClientSession() as http:
        silent = await http.ws_connect(srv.ws_url, autoping=False)
        started = time.monotonic()
        msg = await silent.receive(timeout=3)
        assert msg.type is aiohttp.WSMsgType.PING
        pinged_after = time.monotonic() - started
        assert 0.3 < pinged_after < 1.5, pinged_after
        # No pong: cut within the timeout (plus the wheel's resolution).
        msg = await silent.receive(timeout=3)
        assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR), msg
        assert time.monotonic() - started < pinged_after + 1.2
        assert srv.wait_for_log("no pong in 0.4 s; cut")
        # The healthy one has been pinged a few times and is still there.
        await asyncio.sleep(1.0)
        assert "result" in await healthy.call("subscribe", channel="chat:alive")
        await healthy.close()
    async with aiohttp.ClientSession() as http, http.get(srv.url + "/api/stats") as r:
        assert (await r.json())["connections"] == 0


async def test_a_client_that_does_not_answer_the_close_frame_is_cut(
    start_server: Callable[..., RunningServer],
) -> None:
    srv = start_server(PINGS + "\n[limits]\nmax_connections = 1\n")
    first = await NativeClient.open(srv.ws_url)
    # Over max_connections: 101, then close 3003; this client never answers it.
    reader, writer, head = await raw_handshake(srv)
    assert head.startswith(b"HTTP/1.1 101")
    opcode, payload = await asyncio.wait_for(read_frame(reader), 5)
    assert (opcode, struct.unpack("!H", payload[:2])[0]) == (0x8, 3003)
    assert b"limits.max_connections" in payload
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert time.monotonic() - started < 1.5
    assert srv.wait_for_log("no close frame back in 0.4 s; cut")
    writer.close()
    await first.close()


async def test_sigterm_with_many_connections_open_closes_each_and_exits(
    start_server: Callable[..., RunningServer],
) -> None:
    srv = start_server()
    clients = [await NativeClient.open(srv.ws_url) for _ in range(30)]
    for i, client in enumerate(clients):
        await client.call("subscribe", channel=f"chat:bye{i % 3}")
    # One more that never answers a close frame: the shutdown does not wait for it forever.
    reader, writer, _ = await raw_handshake(srv)
    started = time.monotonic()
    code = await asyncio.to_thread(srv.stop, signal.SIGTERM)
    for client in clients:
        await asyncio.wait_for(client.closed.wait(), 5)
        assert client.ws.close_code == 1001
        assert client.close_reason == "server shutting down"
        await client.close()
    opcode, payload = await asyncio.wait_for(read_frame(reader), 5)
    assert (opcode, struct.unpack("!H", payload[:2])[0]) == (0x8, 1001)
    assert code == 0
    assert time.monotonic() - started < 12
    assert "Traceback" not in srv.log
    writer.close()
