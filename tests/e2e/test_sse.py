"""Plain SSE (``/connection/sse``) against a real ``orbiter serve``."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from urllib.parse import quote

import aiohttp
import pytest

from orbiter import AsyncClient
from orbiter.model import StreamPosition
from orbiter.protocol.eventstream import encode_positions, parse_positions
from tests.support.server import RunningServer
from tests.support.sse_client import EventStream


def sse_url(base: str, *channels: str) -> str:
    query = "&".join("channel=" + quote(c, safe="") for c in channels)
    return f"{base}/connection/sse?{query}"


async def test_batches_carry_every_channel_position_as_id(server: RunningServer) -> None:
    a, b = "e2e:sse:a", "e2e:sse:b"
    stream = await EventStream.open(sse_url(server.url, a, b))
    assert stream.response.status == 200
    headers = stream.response.headers
    assert headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert headers["Cache-Control"] == "no-cache"
    assert headers["X-Accel-Buffering"] == "no"

    opening = await stream.next()
    assert opening.name == "subscribed"
    info = opening.json()["channels"]
    assert [c["channel"] for c in info] == [a, b]
    assert "recovered" not in info[0]
    assert opening.id is not None
    start = parse_positions(opening.id, 2)
    assert [(p.epoch, p.offset) for p in start] == [(c["epoch"], c["offset"]) for c in info]

    async with AsyncClient(server.url) as api:
        pa = await api.publish(a, {"n": 1})
        pb = await api.publish(b, "two")
    pushes = await stream.messages(2)
    assert pushes == [
        {"push": "pub", "channel": a, "offset": pa["offset"], "data": {"n": 1}},
        {"push": "pub", "channel": b, "offset": pb["offset"], "data": "two"},
    ]
    assert stream.last_id is not None
    final = parse_positions(stream.last_id, 2)
    assert [(p.epoch, p.offset) for p in final] == [
        (pa["epoch"], pa["offset"]),
        (pb["epoch"], pb["offset"]),
    ]
    await stream.close()


async def test_last_event_id_resumes_every_channel_exactly(server: RunningServer) -> None:
    a, b = "e2e:sse:resume-a", "e2e:sse:resume-b"
    url = sse_url(server.url, a, b)
    stream = await EventStream.open(url)
    await stream.next()
    async with AsyncClient(server.url) as api:
        await api.publish(a, "a1")
        assert [p["data"] for p in await stream.messages(1)] == ["a1"]
        await stream.close()
        for channel, data in ((a, "a2"), (b, "b1"), (a, "a3")):
            await api.publish(channel, data)

        again = await EventStream.open(url, last_event_id=stream.last_id)
        opening = await again.next()
        assert opening.name == "subscribed"
        assert [c["recovered"] for c in opening.json()["channels"]] == [True, True]
        missed = await again.messages(3)
        assert [p["data"] for p in missed if p["channel"] == a] == ["a2", "a3"]
        assert [p["data"] for p in missed if p["channel"] == b] == ["b1"]
        await api.publish(b, "live")
        assert [p["data"] for p in await again.messages(1)] == ["live"]
    with pytest.raises(TimeoutError):
        await again.next(timeout=0.3)  # nothing twice
    await again.close()


async def test_a_position_that_cannot_be_recovered_is_named(server: RunningServer) -> None:
    a, b = "e2e:sse:lost-a", "e2e:sse:lost-b"
    url = sse_url(server.url, a, b)
    stream = await EventStream.open(url)
    start = parse_positions((await stream.next()).id or "", 2)
    await stream.close()
    forged = encode_positions([start[0], StreamPosition(start[1].offset, "forgotten")])
    again = await EventStream.open(url, last_event_id=forged)
    lost = await again.next()
    assert lost.name == "unrecoverable"
    assert lost.json() == {"channel": b, "epoch": start[1].epoch, "offset": start[1].offset}
    opening = await again.next()
    assert opening.name == "subscribed"
    assert [c["recovered"] for c in opening.json()["channels"]] == [True, False]
    assert opening.id == encode_positions(start)
    await again.close()


CONFIG = """
[session]
ping_interval = 1

[limits]
max_subscriptions = 2
outgoing_buffer = 2048
"""


@pytest.fixture(scope="module")
def limited() -> Iterator[RunningServer]:
    """A server with 1 s heartbeats, 2 channels per connection, a 2 KiB outgoing buffer."""
    srv = RunningServer(CONFIG)
    yield srv
    srv.stop()


async def test_heartbeats_and_a_client_that_left_is_freed(limited: RunningServer) -> None:
    srv = limited
    stream = await EventStream.open(sse_url(srv.url, "e2e:hb"))
    await stream.next()
    await asyncio.sleep(2.5)
    with pytest.raises(TimeoutError):
        await stream.next(timeout=0.1)
    assert stream.comments >= 2
    async with AsyncClient(srv.url) as api:
        assert (await api.channels())["e2e:hb"] == 1
        await stream.close()
        deadline = time.monotonic() + 4
        while "e2e:hb" in await api.channels():
            assert time.monotonic() < deadline, "the session outlived its client"
            await asyncio.sleep(0.1)


async def test_slow_consumer_and_shutdown_end_the_stream_with_a_reason(
    start_server: Callable[..., RunningServer],
) -> None:
    srv = start_server(CONFIG)
    slow = await EventStream.open(sse_url(srv.url, "e2e:big"))
    calm = await EventStream.open(sse_url(srv.url, "e2e:calm"))
    for stream in (slow, calm):
        await stream.next()
    async with AsyncClient(srv.url) as api:
        await api.publish("e2e:big", "x" * 4096)  # more than outgoing_buffer at once
    gone = await slow.next()
    assert (gone.name, gone.json()) == (
        "disconnect",
        {"code": 3001, "reason": "outgoing buffer full", "reconnect": True},
    )
    with pytest.raises(EOFError):
        await slow.next()
    await slow.close()

    stopping = asyncio.create_task(asyncio.to_thread(srv.stop))
    bye = await calm.next()
    assert (bye.name, bye.json()["code"]) == ("disconnect", 1001)
    with pytest.raises(EOFError):
        await calm.next()
    assert await stopping == 0
    await calm.close()


@pytest.mark.parametrize(
    ("query", "headers", "status", "problem"),
    [
        ("", {}, 400, "name at least one channel"),
        ("channel=", {}, 400, "non-empty"),
        ("channel=a%01b", {}, 400, "control character"),
        ("channel=a&channel=b&channel=c", {}, 400, "at most 2 channels"),
        ("channel=a&channel=a", {}, 400, "named twice"),
        ("channel=%24key%3Aann%2C0%2C%2Fx", {}, 403, "reserved"),
        ("channel=a", {"Last-Event-ID": "garbage"}, 400, "not 'epoch:offset'"),
        ("channel=a", {"Last-Event-ID": "e:1,e:2"}, 400, "the URL names 1 channels"),
    ],
)
async def test_bad_requests_get_a_clear_error(
    limited: RunningServer, query: str, headers: dict[str, str], status: int, problem: str
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{limited.url}/connection/sse?{query}", headers=headers) as response,
    ):
        assert response.status == status
        body = await response.json()
    assert problem in body["error"]["message"]


async def test_one_channel_streams_share_the_channel_position_as_id(
    server: RunningServer,
) -> None:
    channel = "e2e:sse:alone"
    streams = [await EventStream.open(sse_url(server.url, channel)) for _ in range(2)]
    for stream in streams:
        await stream.next()
    async with AsyncClient(server.url) as api:
        published = [await api.publish(channel, n) for n in range(3)]
    for stream in streams:
        assert [p["data"] for p in await stream.messages(3)] == [0, 1, 2]
        last = published[-1]
        assert stream.last_id == encode_positions([StreamPosition(last["offset"], last["epoch"])])
        await stream.close()


async def _read_until(reader: asyncio.StreamReader, marker: bytes, seen: bytes = b"") -> bytes:
    async with asyncio.timeout(5):
        while marker not in seen:
            more = await reader.read(65536)
            assert more, f"the stream ended before {marker!r}: {seen!r}"
            seen += more
    return seen


async def test_an_http_1_0_client_gets_events_without_chunks(server: RunningServer) -> None:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /connection/sse?channel=e2e:sse:old HTTP/1.0\r\n\r\n")
    seen = await _read_until(reader, b"event: subscribed")
    head, _, body = seen.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert body.startswith(b"event: subscribed\n")
    async with AsyncClient(server.url) as api:
        await api.publish("e2e:sse:old", "hi")
    body = await _read_until(reader, b'"data":"hi"}]\n\n', body)
    last = body.split(b"\n\n")[-2]
    assert last.startswith(b"id: ")
    assert b"\r\n" not in last
    writer.close()


STALL_CONFIG = """
[session]
ping_interval = 1

[limits]
outgoing_buffer = 33554432
"""


async def test_a_client_that_stopped_reading_is_cut(
    start_server: Callable[..., RunningServer],
) -> None:
    """Its buffers hold less than the outgoing limit, so only the stall check frees it."""
    srv = start_server(STALL_CONFIG)
    host, port = srv.url.removeprefix("http://").rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(f"GET /connection/sse?channel=e2e:stall HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    sock.settimeout(5)
    assert b"200" in sock.recv(4096)
    try:
        async with AsyncClient(srv.url) as api:
            for _ in range(150):  # 9 MB: more than loopback's socket buffers hold
                await api.publish("e2e:stall", "x" * 60_000)
            assert srv.wait_for_log("the client stopped reading; cut", timeout=10)
            deadline = time.monotonic() + 5
            while "e2e:stall" in await api.channels():
                assert time.monotonic() < deadline, "the stalled stream's session outlived it"
                await asyncio.sleep(0.1)
    finally:
        sock.close()
