"""An idle native WebSocket holds no task, no aiohttp object and no timer of its own."""

from __future__ import annotations

import asyncio
import base64
import gc
import os
import struct
from collections import Counter
from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web

from orbiter.config.settings import config_from_dict
from orbiter.http.app import build_app
from orbiter.node import Node
from orbiter.transports.app_keys import RAW_ROUTERS
from orbiter.transports.sniffing import SniffingRunner, first_claim
from orbiter.transports.websocket import NativeWebSocket

N = 40


def masked_text(payload: bytes) -> bytes:
    mask = os.urandom(4)
    return (
        bytes((0x81, 0x80 | len(payload)))
        + mask
        + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    )


async def read_text(reader: asyncio.StreamReader) -> bytes:
    first, second = await reader.readexactly(2)
    assert first == 0x81
    n = second & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    return await reader.readexactly(n)


@pytest.fixture
async def served() -> AsyncIterator[tuple[Node, int]]:
    node = Node(config_from_dict({}))
    app = build_app(node)
    runner = SniffingRunner(app, first_claim(app[RAW_ROUTERS]), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield node, runner.addresses[0][1]
    await runner.cleanup()


async def connect(port: int, i: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            "GET /connection/websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    writer.write(masked_text(b'{"id":1,"op":"connect"}'))
    subscribe = {"id": 2, "op": "subscribe", "channel": f"idle:{i % 4}"}
    writer.write(masked_text(orjson.dumps(subscribe)))
    ids: list[int] = []
    while len(ids) < 2:
        ids += [orjson.loads(line)["id"] for line in (await read_text(reader)).split(b"\n")]
    assert ids == [1, 2]
    return reader, writer


def aiohttp_objects() -> Counter[str]:
    return Counter(
        type(o).__qualname__
        for o in gc.get_objects()
        if str(getattr(type(o), "__module__", "")).startswith("aiohttp")
    )


async def test_idle_connections_hold_no_task_no_aiohttp_object_and_share_one_timer(
    served: tuple[Node, int],
) -> None:
    node, port = served
    first = await connect(port, 0)
    await asyncio.sleep(0.1)
    gc.collect()
    tasks_before = len(asyncio.all_tasks())
    aiohttp_before = aiohttp_objects()
    clients = [await connect(port, i) for i in range(N)]
    await asyncio.sleep(0.1)
    gc.collect()
    assert len(node.sessions) == N + 1
    assert len(asyncio.all_tasks()) == tasks_before
    grown = aiohttp_objects() - aiohttp_before
    assert not any(count >= N for count in grown.values()), grown
    protocols = [o for o in gc.get_objects() if isinstance(o, NativeWebSocket)]
    assert len(protocols) == N + 1
    assert not any(hasattr(p, "__dict__") for p in protocols)
    wheels = {p._endpoint.wheel for p in protocols}  # one wheel, one timer, for all
    assert len(wheels) == 1
    assert len(next(iter(wheels))) == N + 1
    for _, writer in [first, *clients]:
        writer.close()
    for _ in range(100):
        if not node.sessions:
            break
        await asyncio.sleep(0.02)
    assert not node.sessions
    assert len(next(iter(wheels))) == 0
