"""A reader that stops reading while a channel streams: it is cut, nobody else waits.

The stalled reader is a raw socket with a tiny receive buffer that did the
WebSocket handshake and subscribed, then reads nothing more. Two readers
that keep reading must get every publication in order with low latency;
the stalled one is disconnected (a log line, a counter) once its outgoing
buffer is full, and on reconnect recovers everything it missed from history.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest

from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient

CHANNEL = "stream:fast"
MESSAGES = 3000
PAYLOAD = "x" * 2000
BATCH = 20

CONFIG = """
[server]
api_key = "k"

[session]
pong_timeout = 1

[limits]
outgoing_buffer = 262144
publish_rate = 1000000
publish_burst = 1000000

[[channel]]
match = "stream:*"
client_publish = true
history_size = 10000
"""


@pytest.fixture
def streaming() -> Iterator[RunningServer]:
    srv = RunningServer(CONFIG)
    yield srv
    srv.stop()


class StalledReader:
    """A WebSocket client on a raw socket that, once subscribed, stops reading."""

    def __init__(self, srv: RunningServer) -> None:
        host, port = srv.url.removeprefix("http://").rsplit(":", 1)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(5)
        self.sock.connect((host, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                "GET /connection/websocket HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self._buffer = b""
        while b"\r\n\r\n" not in self._buffer:
            self._buffer += self.sock.recv(4096)
        self._buffer = self._buffer.split(b"\r\n\r\n", 1)[1]

    def send(self, obj: object) -> None:
        data = orjson.dumps(obj)
        mask = os.urandom(4)
        header = bytes([0x81, 0x80 | len(data)]) + mask  # short frames only
        self.sock.sendall(header + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def frame(self) -> bytes:
        while True:
            if len(self._buffer) >= 2:
                n = self._buffer[1] & 0x7F
                start = 2 if n < 126 else 4
                if n == 126 and len(self._buffer) >= 4:
                    n = int.from_bytes(self._buffer[2:4], "big")
                if len(self._buffer) >= start + n and (n < 126 or start == 4):
                    payload = self._buffer[start : start + n]
                    self._buffer = self._buffer[start + n :]
                    return payload
            self._buffer += self.sock.recv(4096)

    def drained_until_cut(self, timeout: float) -> bool:
        """Read everything left; True if the server ended the connection in time."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except TimeoutError:
            return False
        except ConnectionResetError:
            pass
        return True


async def stats(srv: RunningServer) -> dict[str, Any]:
    headers = {"X-API-Key": "k"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(srv.url + "/api/stats", headers=headers) as r,
    ):
        result: dict[str, Any] = await r.json()
        return result


async def read_all(client: NativeClient, latencies: list[float], count: int) -> list[int]:
    offsets: list[int] = []
    while len(offsets) < count:
        push = await client.next_push(timeout=20)
        latencies.append(time.time() - push["data"]["t"])
        offsets.append(push["offset"])
    return offsets


async def test_a_stalled_reader_is_cut_and_recovers_while_others_keep_up(
    streaming: RunningServer,
) -> None:
    srv = streaming
    stalled = await asyncio.to_thread(StalledReader, srv)
    stalled.send({"id": 1, "op": "connect"})
    stalled.send({"id": 2, "op": "subscribe", "channel": CHANNEL})
    replies = [orjson.loads(stalled.frame()) for _ in range(2)]
    start = replies[1]["result"]
    fast = [await NativeClient.open(srv.ws_url) for _ in range(2)]
    for client in fast:
        await client.call("subscribe", channel=CHANNEL)
    publisher = await NativeClient.open(srv.ws_url)
    latencies: list[list[float]] = [[], []]
    readers = [
        asyncio.create_task(read_all(c, lat, MESSAGES))
        for c, lat in zip(fast, latencies, strict=True)
    ]
    next_id = 100
    for _ in range(0, MESSAGES, BATCH):
        ids = list(range(next_id, next_id + BATCH))
        next_id += BATCH
        lines = [
            orjson.dumps(
                {
                    "id": i,
                    "op": "publish",
                    "channel": CHANNEL,
                    "data": {"t": time.time(), "p": PAYLOAD},
                }
            )
            for i in ids
        ]
        await publisher.ws.send_bytes(b"\n".join(lines))
        for i in ids:
            assert "result" in await publisher.reply(i, timeout=20)
    received = await asyncio.gather(*readers)
    first_offset = start["offset"] + 1
    for offsets in received:
        assert offsets == list(range(first_offset, first_offset + MESSAGES))
    for lat in latencies:
        lat.sort()
        assert lat[len(lat) * 99 // 100] < 1.0, f"p99 latency {lat[len(lat) * 99 // 100]:.3f} s"

    assert srv.wait_for_log("disconnected: outgoing buffer full")
    # Freed by the server while it still reads nothing (no help from a drain).
    deadline = time.monotonic() + 15
    while (await stats(srv))["connections"] > 3:
        assert time.monotonic() < deadline, "the stalled reader's connection was not freed"
        await asyncio.sleep(0.2)
    assert await asyncio.to_thread(stalled.drained_until_cut, 5), "the stalled reader was not cut"
    stalled.sock.close()

    again = await NativeClient.open(srv.ws_url)
    since = {"offset": start["offset"], "epoch": start["epoch"]}
    result = (await again.call("subscribe", channel=CHANNEL, since=since))["result"]
    assert result["recovered"] is True
    assert [p["offset"] for p in result["publications"]] == list(
        range(first_offset, first_offset + MESSAGES)
    )
    assert (await stats(srv))["counters"]["limit_outgoing_buffer"] == 1
    for client in (*fast, publisher, again):
        await client.close()
