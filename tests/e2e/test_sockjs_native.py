"""orbiter's native protocol over SockJS (xhr-polling, xhr-streaming, WebSocket)."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp

from orbiter import AsyncClient
from tests.support.rawhttp import RawConnection, fetch
from tests.support.server import RunningServer


class PollingClient:
    """A native-protocol client over SockJS xhr-polling."""

    def __init__(self, base: str) -> None:
        self.url = f"{base}/sockjs/000/{uuid.uuid4()}"
        self.ids = 0
        self.inbox: list[dict[str, Any]] = []

    async def open(self) -> None:
        assert (await fetch(self.url + "/xhr", "POST"))[1] == b"o\n"

    async def send(self, op: str, **fields: Any) -> int:
        self.ids += 1
        command = json.dumps({"id": self.ids, "op": op, **fields})
        head, _ = await fetch(self.url + "/xhr_send", "POST", body=json.dumps([command]).encode())
        assert head.status == 204
        return self.ids

    async def poll(self) -> str:
        _, body = await fetch(self.url + "/xhr", "POST")
        frame = body.decode().rstrip("\n")
        if frame.startswith("a"):
            self.inbox += [json.loads(m) for m in json.loads(frame[1:])]
        return frame

    async def next(self, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        for _ in range(20):
            for message in self.inbox:
                if match(message):
                    self.inbox.remove(message)
                    return message
            await self.poll()
        raise AssertionError(f"no matching message in {self.inbox}")

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        id_ = await self.send(op, **fields)
        return await self.next(lambda m: m.get("id") == id_)


async def test_native_protocol_over_xhr_polling(server: RunningServer) -> None:
    client = PollingClient(server.url)
    await client.open()
    assert "client" in (await client.call("connect"))["result"]
    sub = await client.call("subscribe", channel="sockjs:polling")
    assert sub["result"]["channel"] == "sockjs:polling"
    async with AsyncClient(server.url) as api:
        result = await api.publish("sockjs:polling", {"via": "xhr"})
    push = await client.next(lambda m: m.get("push") == "pub")
    assert push == {
        "push": "pub",
        "channel": "sockjs:polling",
        "offset": result["offset"],
        "data": {"via": "xhr"},
    }
    error = await client.call("publish", channel="private", data=1)
    assert error["error"]["code"] == 103


async def test_native_protocol_over_sockjs_websocket(server: RunningServer) -> None:
    url = server.url.replace("http://", "ws://") + f"/sockjs/000/{uuid.uuid4()}/websocket"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        assert (await ws.receive(5)).data == "o"

        async def call(id_: int, op: str, **fields: Any) -> dict[str, Any]:
            await ws.send_str(json.dumps([json.dumps({"id": id_, "op": op, **fields})]))
            return await next_message(lambda m: m.get("id") == id_)

        async def next_message(match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
            while True:
                frame = (await ws.receive(5)).data
                if frame.startswith("a"):
                    for text in json.loads(frame[1:]):
                        message: dict[str, Any] = json.loads(text)
                        if match(message):
                            return message

        assert "result" in await call(1, "connect")
        assert "result" in await call(2, "subscribe", channel="sockjs:ws")
        async with AsyncClient(server.url) as api:
            await api.publish("sockjs:ws", "hello")
        push = await next_message(lambda m: m.get("push") == "pub")
        assert push["data"] == "hello"


async def test_a_failed_connect_closes_the_sockjs_session_with_its_code(
    server: RunningServer,
) -> None:
    client = PollingClient(server.url)
    await client.open()
    await client.send("connect", key="no commas here")
    frames = [await client.poll() for _ in range(2)]
    assert any(f.startswith("c[3501,") for f in frames), frames


async def test_shutdown_closes_sockjs_sessions_with_a_close_frame(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(args=("--sockjs-test-services",))
    native_url = f"{server.url}/sockjs/000/{uuid.uuid4()}"
    echo_url = f"{server.url}/sockjs/echo/000/{uuid.uuid4()}"
    streams = []
    for url in (native_url, echo_url):
        conn = await RawConnection.open(url)
        await conn.send_request("POST", "/" + url.split("/", 3)[3] + "/xhr_streaming")
        await conn.read_head()
        await conn.read_chunk()
        assert await conn.read_chunk() == b"o\n"
        streams.append(conn)
    server.process.send_signal(signal.SIGTERM)
    for conn in streams:
        assert await conn.read_chunk() == b'c[1001,"server shutting down"]\n'
        assert await conn.read_chunk() == b""
        await conn.close()
    assert server.process.wait(10) == 0


async def test_bursts_and_replies_arrive_in_order_over_xhr_polling(server: RunningServer) -> None:
    """Publications (fanned out as shared batches) and replies come in order, none lost."""
    clients = [PollingClient(server.url) for _ in range(3)]
    for client in clients:
        await client.open()
        await client.call("connect")
        await client.call("subscribe", channel="sockjs:burst")
    async with AsyncClient(server.url) as api:
        results = await asyncio.gather(*(api.publish("sockjs:burst", i) for i in range(40)))
        asking = [await client.send("presence", channel="sockjs:burst") for client in clients]
        more = await asyncio.gather(*(api.publish("sockjs:burst", i) for i in range(40, 60)))
    offsets = sorted(r["offset"] for r in (*results, *more))
    for client, id_ in zip(clients, asking, strict=True):
        for _ in range(40):
            pubs = [m for m in client.inbox if m.get("push") == "pub"]
            if len(pubs) >= 60 and any(m.get("id") == id_ for m in client.inbox):
                break
            await client.poll()
        pubs = [m for m in client.inbox if m.get("push") == "pub"]
        assert [m["offset"] for m in pubs] == offsets
        assert sorted(m["data"] for m in pubs) == list(range(60))
        assert any(m.get("id") == id_ for m in client.inbox)
