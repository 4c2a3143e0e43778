"""One channel, every route: STOMP, HTTP and native publishers; STOMP, native and SSE
subscribers. Every reader sees the same publications in the same order."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest

from tests.support.server import RunningServer
from tests.support.sse_client import EventStream
from tests.support.stomp_helpers import connect, start_stomp_server
from tests.support.wsclient import NativeClient

CHANNEL = "chat:bridge"
TOPIC = "/topic/" + CHANNEL
ROUNDS = 5


@pytest.fixture(scope="module")
def broker() -> Iterator[tuple[RunningServer, int]]:
    srv, port = start_stomp_server()
    yield srv, port
    srv.stop()


async def test_http_publish_reaches_stomp_subscribers_as_message(broker):
    srv, port = broker
    conn, got = connect(port)
    conn.subscribe("/topic/chat", id="1", receipt="s")
    assert await asyncio.to_thread(got.wait, lambda: "s" in got.receipts)
    async with aiohttp.ClientSession() as http:
        for data in ("<b>hi</b>", {"text": "hi"}):
            async with http.post(
                srv.url + "/api/publish", json={"channel": "chat", "data": data}
            ) as response:
                assert response.status == 200, await response.text()
                offset = (await response.json())["offset"]
    first, second = await asyncio.to_thread(got.wait_messages, 2)
    assert (first.body, first.headers["content-type"]) == ("<b>hi</b>", "text/plain;charset=utf-8")
    assert (second.body, second.headers["content-type"]) == ('{"text":"hi"}', "application/json")
    assert second.headers["orbiter-offset"] == str(offset)
    assert first.headers["destination"] == "/topic/chat"
    conn.disconnect()


async def test_every_route_sees_one_order(broker):
    srv, port = broker
    stomp_reader, stomp_got = connect(port)
    stomp_reader.subscribe(TOPIC, id="reader", receipt="s")
    assert await asyncio.to_thread(stomp_got.wait, lambda: "s" in stomp_got.receipts)
    native_reader = await NativeClient.open(srv.ws_url)
    assert "result" in await native_reader.call("subscribe", channel=CHANNEL)
    sse = await EventStream.open(f"{srv.url}/connection/sse?channel={quote(CHANNEL, safe='')}")
    assert sse.response.status == 200
    assert (await sse.next(timeout=10)).name == "subscribed"
    stomp_writer, writer_got = connect(port)
    native_writer = await NativeClient.open(srv.ws_url)
    http = aiohttp.ClientSession()

    async def via_http(data: Any) -> None:
        async with http.post(
            srv.url + "/api/publish", json={"channel": CHANNEL, "data": data}
        ) as response:
            assert response.status == 200

    async def via_native(data: Any) -> None:
        reply = await native_writer.call("publish", channel=CHANNEL, data=data)
        assert "result" in reply, reply

    def via_stomp(data: Any) -> None:
        stomp_writer.send(TOPIC, orjson.dumps(data).decode(), content_type="application/json")

    await via_http({"marker": True})
    sse_seen = await sse.messages(1, timeout=10)
    assert sse_seen[-1]["data"] == {"marker": True}
    start = sse_seen[-1]["offset"]

    for i in range(ROUNDS):
        await asyncio.gather(
            via_http({"route": "http", "i": i}),
            via_native({"route": "native", "i": i}),
            asyncio.to_thread(via_stomp, {"route": "stomp", "i": i}),
        )
    total = 1 + 3 * ROUNDS

    stomp_messages = await asyncio.to_thread(stomp_got.wait_messages, total, 10.0)
    from_stomp = [
        (int(m.headers["orbiter-offset"]), orjson.loads(m.body)) for m in stomp_messages[-total:]
    ]
    from_native: list[tuple[int, Any]] = []
    while len(from_native) < total:
        push = await native_reader.next_push(timeout=10)
        if push["push"] == "pub":
            from_native.append((push["offset"], push["data"]))
    from_sse = [(p["offset"], p["data"]) for p in sse_seen]
    while len(from_sse) < total:
        from_sse += [(p["offset"], p["data"]) for p in await sse.messages(1, timeout=10)]

    assert from_stomp == from_native == from_sse
    assert [offset for offset, _ in from_stomp] == list(range(start, start + total))
    routes = sorted((d["route"], d["i"]) for _, d in from_stomp[1:])
    assert routes == sorted((r, i) for r in ("http", "native", "stomp") for i in range(ROUNDS))
    assert not writer_got.errors

    await http.close()
    await sse.close()
    await native_reader.close()
    await native_writer.close()
    stomp_reader.disconnect()
    stomp_writer.disconnect()
