"""Every cheap attack of issue 13 at once, while legitimate clients work.

One real server (open, the embedded default's mode, with small budgets so
the bounds are reached within the test). For about 12 seconds, attackers
without credentials, each from its own loopback address (so per-IP limits
apply to them and not to the legitimate clients on 127.0.0.1):

- a WebSocket ping flood that never reads (127.0.0.2);
- STOMP SENDs of 16 KB to thousands of queues nobody consumes (127.0.0.3);
- long polls on random channel names (127.0.0.4);
- a slowloris: request heads sent a byte at a time (127.0.0.5-7);
- 60 KB publications to channels with deep history (127.0.0.8);
- ping floods read back at full speed on aiohttp's WebSocket routes,
  ``/stomp`` and SockJS's (127.0.0.9);
- request bodies trickled a byte at a time, never idle for long (127.0.0.10);
- SSE streams opened and dropped as fast as they are answered (127.0.0.11).

Meanwhile an app server publishes numbered messages over the HTTP API and
two WebSocket subscribers must receive every one, in order, and the
server's RSS must stay under the bound below.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import secrets
import sys
import time
from collections.abc import Callable

import aiohttp
import orjson
import pytest

from orbiter import AsyncClient
from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient

DURATION = 12.0
#: The server may grow by at most this much over its idle size while under attack.
RSS_BOUND = 160 * 1024 * 1024
_STOMP_PORT = re.compile(r"stomp listening on \S+:(\d+)")

CONFIG = """
[limits]
head_timeout = 2
max_connections_per_ip = 60
body_timeout = 1
body_deadline = 3

[history]
max_bytes = 8388608

[stomp]
listen = "127.0.0.1:0"
max_queue_bytes = 1048576
max_total_queue_bytes = 8388608

[[channel]]
match = "flood:*"
client_publish = true
history_size = 1000
history_ttl = 600
"""


def _ws_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (payload under 126 bytes)."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


async def _open(port: int, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def _ws_handshake(
    port: int, source: str, path: str = "/connection/websocket"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    """A WebSocket past its 101 (None if refused)."""
    reader, writer = await _open(port, source)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    if b" 101 " not in head.split(b"\r\n")[0]:
        writer.close()
        return None
    return reader, writer


async def ping_flood(port: int, until: float) -> None:
    """Pings as fast as the socket takes them; never reads a pong."""

    async def one() -> None:
        while time.monotonic() < until:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                opened = await _ws_handshake(port, "127.0.0.2")
                if opened is None:
                    await asyncio.sleep(0.2)
                    continue
                writer = opened[1]
                frames = _ws_frame(0x9, b"p" * 100) * 200
                while time.monotonic() < until and not writer.is_closing():
                    writer.write(frames)
                    await asyncio.wait_for(writer.drain(), 2)
            await asyncio.sleep(0.05)

    with contextlib.suppress(TimeoutError):
        await asyncio.gather(*(one() for _ in range(4)))


async def stomp_queue_flood(port: int, until: float) -> None:
    body = b"q" * 16_000
    while time.monotonic() < until:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, TimeoutError):
            reader, writer = await _open(port, "127.0.0.3")
            writer.write(b"CONNECT\naccept-version:1.2\nhost:x\n\n\x00")
            drain = asyncio.create_task(reader.read(-1))  # ERRORs, read and dropped
            for _ in range(2_000):
                if time.monotonic() >= until or writer.is_closing():
                    break
                queue = f"/queue/flood-{secrets.token_hex(4)}"
                writer.write(f"SEND\ndestination:{queue}\n\n".encode() + body + b"\x00")
                await asyncio.wait_for(writer.drain(), 2)
            writer.close()
            drain.cancel()
        await asyncio.sleep(0.05)


async def poll_flood(url: str, until: float) -> None:
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.4", 0), limit=20)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one() -> None:
            while time.monotonic() < until:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    name = f"probe:{secrets.token_hex(6)}"
                    async with http.get(url + "/poll", params={"channel": name}) as r:
                        await r.read()

        await asyncio.gather(*(one() for _ in range(20)))


async def slowloris(port: int, until: float) -> None:
    async def one(source: str) -> None:
        while time.monotonic() < until:
            with contextlib.suppress(OSError):
                _, writer = await _open(port, source)
                for byte in b"GET /poll?channel=x HTTP/1.1\r\nHost: 127.0.0.1\r\n":
                    if time.monotonic() >= until or writer.is_closing():
                        break
                    writer.write(bytes([byte]))
                    await asyncio.sleep(0.5)
                writer.close()
            await asyncio.sleep(0.1)

    sources = [f"127.0.0.{5 + i % 3}" for i in range(150)]
    await asyncio.gather(*(one(source) for source in sources))


async def history_flood(port: int, until: float) -> None:
    data = "h" * 60_000
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.8", 0), limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(n: int) -> None:
            while time.monotonic() < until:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, ConnectionError):
                    ws = await http.ws_connect(
                        f"ws://127.0.0.1:{port}/connection/websocket", max_msg_size=0
                    )
                    await ws.send_bytes(b'{"id":1,"op":"connect"}')
                    for i in range(200):
                        if time.monotonic() >= until:
                            break
                        message = {"id": i + 2, "op": "publish", "data": data}
                        await ws.send_bytes(orjson.dumps({**message, "channel": f"flood:{n}"}))
                        await asyncio.sleep(0.05)  # the default publish_rate: 20 per second
                    await ws.close()

        await asyncio.gather(*(one(n) for n in range(20)))


async def read_back_flood(port: int, until: float) -> None:
    """Pings as fast as aiohttp's routes take them, every pong read: frame_rate holds them."""

    async def one(path: str) -> None:
        while time.monotonic() < until:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError, TimeoutError):
                opened = await _ws_handshake(port, "127.0.0.9", path)
                if opened is None:
                    await asyncio.sleep(0.2)
                    continue
                reader, writer = opened
                drain = asyncio.create_task(reader.read(-1))  # pongs, read and dropped
                frames = _ws_frame(0x9, b"p" * 100) * 200
                try:
                    while time.monotonic() < until and not writer.is_closing():
                        writer.write(frames)
                        await asyncio.wait_for(writer.drain(), 2)
                finally:
                    writer.transport.abort()
                    drain.cancel()
            await asyncio.sleep(0.05)

    paths = ["/stomp", "/sockjs/websocket", "/sockjs/000/soak/websocket"]
    await asyncio.gather(*(one(path) for path in paths))


async def trickle(port: int, until: float) -> None:
    """POST heads whose bodies come a byte every 0.5 s (body_deadline cuts them)."""

    async def one(n: int) -> None:
        while time.monotonic() < until:
            with contextlib.suppress(OSError):
                _, writer = await _open(port, "127.0.0.10")
                path = "/api/publish" if n % 2 else f"/sockjs/000/t{n}/xhr_send"
                writer.write(
                    f"POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n"
                    "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n".encode()
                )
                while time.monotonic() < until and not writer.is_closing():
                    writer.write(b" ")
                    await asyncio.sleep(0.5)
                writer.close()
            await asyncio.sleep(0.1)

    await asyncio.gather(*(one(n) for n in range(20)))


async def stream_churn(url: str, until: float) -> None:
    """SSE streams opened and dropped at once, again and again."""
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.11", 0), limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one() -> None:
            while time.monotonic() < until:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(url + "/connection/sse?channel=chat:soak") as r:
                        await r.content.readany()
                await asyncio.sleep(0.05)

        await asyncio.gather(*(one() for _ in range(5)))


@pytest.mark.solo  # the app's publication rate under the flood is part of what it checks
async def test_legitimate_clients_get_everything_in_order_under_every_attack(
    start_server: Callable[..., RunningServer],
) -> None:
    srv = start_server(CONFIG)
    assert srv.wait_for_log("stomp listening on")
    match = _STOMP_PORT.search(srv.log)
    assert match is not None
    stomp_port = int(match.group(1))
    port = int(srv.url.rsplit(":", 1)[1])

    subscribers = [await NativeClient.open(srv.ws_url) for _ in range(2)]
    for subscriber in subscribers:
        assert "result" in await subscriber.call("subscribe", channel="chat:soak")
    await asyncio.sleep(0.5)
    idle = srv.rss_bytes()
    peak = idle
    # The attackers run in a process of their own, so that their work does not
    # slow this process's legitimate clients.
    attackers = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.e2e.test_hostile_soak", str(port), str(stomp_port)
    )
    try:
        until = time.monotonic() + DURATION
        sent = 0
        async with AsyncClient(srv.url) as app:
            while time.monotonic() < until:
                await app.publish("chat:soak", {"n": sent})
                sent += 1
                peak = max(peak, srv.rss_bytes())
                await asyncio.sleep(0.02)
        async with asyncio.timeout(30):
            assert await attackers.wait() == 0
    finally:
        if attackers.returncode is None:
            attackers.kill()
            await attackers.wait()
    peak = max(peak, srv.rss_bytes())

    for subscriber in subscribers:
        got: list[int] = []
        async with asyncio.timeout(10):
            while len(got) < sent:
                got.append((await subscriber.next_push())["data"]["n"])
        assert got == list(range(sent))
        await subscriber.close()
    assert sent > 200, f"the app published only {sent} in {DURATION} s"
    assert peak - idle < RSS_BOUND, f"RSS grew {(peak - idle) / 2**20:.0f} MiB"
    assert srv.process.poll() is None
    assert "Traceback" not in srv.log


async def attack(port: int, stomp_port: int) -> None:
    """Every attack at once, for :data:`DURATION` seconds."""
    until = time.monotonic() + DURATION
    await asyncio.gather(
        ping_flood(port, until),
        stomp_queue_flood(stomp_port, until),
        poll_flood(f"http://127.0.0.1:{port}", until),
        slowloris(port, until),
        history_flood(port, until),
        read_back_flood(port, until),
        trickle(port, until),
        stream_churn(f"http://127.0.0.1:{port}", until),
    )


if __name__ == "__main__":
    asyncio.run(attack(int(sys.argv[1]), int(sys.argv[2])))
