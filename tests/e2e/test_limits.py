"""Each limit exceeded by one, on a real server: a clear error to the offender, a log
line with its address, a counter at /api/stats, and no effect on anyone else."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest

from orbiter import AsyncClient, OrbiterError
from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient

CONFIG = """
[server]
api_key = "k"

[limits]
max_message_size = 1024
max_http_body = 2048
max_subscriptions = 3
max_connections = 6
max_connections_per_ip = 5
publish_rate = 1
publish_burst = 3
max_channels = 4
"""


@pytest.fixture
def limited() -> Iterator[RunningServer]:
    srv = RunningServer(CONFIG)
    yield srv
    srv.stop()


async def stats(srv: RunningServer) -> dict[str, Any]:
    headers = {"X-API-Key": "k"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(srv.url + "/api/stats", headers=headers) as r,
    ):
        result: dict[str, Any] = await r.json()
        return result


def ping_of_size(size: int) -> str:
    """A ping command of exactly ``size`` bytes."""
    head = '{"id": 5, "op": "ping", "pad": "'
    return head + "x" * (size - len(head) - 2) + '"}'


async def test_message_size_and_http_body(limited: RunningServer) -> None:
    client = await NativeClient.open(limited.ws_url)
    bystander = await NativeClient.open(limited.ws_url)
    await client.ws.send_str(ping_of_size(1024))
    assert (await client.reply(5))["result"] == {}
    await client.ws.send_str(ping_of_size(1025))
    await asyncio.wait_for(client.closed.wait(), 5)
    assert client.ws.close_code == 1009
    assert (await bystander.call("ping"))["result"] == {}
    async with aiohttp.ClientSession() as http:
        url, headers = limited.url + "/api/publish", {"X-API-Key": "k"}
        head = b'{"channel": "chat:b", "data": "'
        for size, status in ((2048, 200), (2049, 413)):
            body = head + b"x" * (size - len(head) - 2) + b'"}'
            async with http.post(url, data=body, headers=headers) as r:
                assert r.status == status, size
    counters = (await stats(limited))["counters"]
    assert counters["limit_message_size"] == 1
    assert counters["limit_http_body"] == 1
    await client.close()
    await bystander.close()


async def test_subscriptions_channels_and_publish_rate(limited: RunningServer) -> None:
    a = await NativeClient.open(limited.ws_url)
    b = await NativeClient.open(limited.ws_url)
    for i in range(3):
        assert "result" in await a.call("subscribe", channel=f"chat:{i}")
    over = await a.call("subscribe", channel="chat:3")
    assert over["error"]["code"] == 106
    assert "max_subscriptions" in over["error"]["message"]
    # Subscribing stores no channel stream: max_channels (4) never refuses a reader.
    for i in range(3, 9):
        assert "result" in await b.call("subscribe", channel=f"chat:{i}")
        assert "result" in await b.call("unsubscribe", channel=f"chat:{i}")
    assert "result" in await b.call("subscribe", channel="chat:0")
    # Publishing: a burst of three, then refused; nothing refused is published.
    replies = [await a.call("publish", channel="chat:0", data=n) for n in range(4)]
    assert ["result" in r for r in replies] == [True, True, True, False]
    assert replies[3]["error"]["code"] == 106
    assert "publish_rate" in replies[3]["error"]["message"]
    assert "result" in await b.call("publish", channel="chat:0", data="b is not limited")
    async with AsyncClient(limited.url, api_key="k") as api:
        page = await api.history("chat:0")
    assert [p["data"] for p in page["publications"]] == [0, 1, 2, "b is not limited"]
    # Tokens coming back at the rate: tests/session/test_session.py, on a clock it moves.
    counters = (await stats(limited))["counters"]
    assert counters["limit_subscriptions"] == 1
    assert "limit_channels" not in counters
    assert counters["limit_publish_rate"] == 1
    assert limited.wait_for_log("publishing too fast")
    await a.close()
    await b.close()


async def test_connections_per_ip_and_in_total(limited: RunningServer) -> None:
    clients = [await NativeClient.open(limited.ws_url) for _ in range(5)]
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(limited.ws_url)
        msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 3003
        assert "max_connections_per_ip" in str(msg.extra)
        async with http.get(limited.url + "/connection/sse?channel=chat:x") as r:
            assert r.status == 503
            assert r.headers["Retry-After"]
    # The others are unharmed; one leaving makes room.
    assert all([(await c.call("ping"))["result"] == {} for c in clients])
    await clients.pop().close()
    await asyncio.sleep(0.2)
    clients.append(await NativeClient.open(limited.ws_url))
    counters = (await stats(limited))["counters"]
    assert counters["limit_connections_per_ip"] == 2
    assert limited.wait_for_log("refused: 5 from that address")
    for c in clients:
        await c.close()


async def test_total_connections() -> None:
    srv = RunningServer("[limits]\nmax_connections = 2\n")
    try:
        clients = [await NativeClient.open(srv.ws_url) for _ in range(2)]
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(srv.url.replace("http", "ws") + "/sockjs/websocket")
            await ws.send_str(orjson.dumps({"id": 1, "op": "connect"}).decode())
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 3003
            assert "full" in str(msg.extra)
        for c in clients:
            await c.close()
    finally:
        srv.stop()


async def test_sockjs_limits_are_counted_too(limited: RunningServer) -> None:
    base = limited.url + "/sockjs/000/limits1"
    async with aiohttp.ClientSession() as http:
        async with http.post(base + "/xhr") as r:
            assert await r.read() == b"o\n"
        too_big = orjson.dumps([ping_of_size(1025)])
        async with http.post(base + "/xhr_send", data=too_big) as r:
            assert r.status == 413
        async with http.post(base + "/xhr_send", data=b"x" * 2049) as r:
            assert r.status == 413
    counters = (await stats(limited))["counters"]
    assert counters["limit_message_size"] == 1
    assert counters["limit_http_body"] == 1


async def test_held_polls_count_as_connections_of_their_address(limited: RunningServer) -> None:
    clients = [await NativeClient.open(limited.ws_url) for _ in range(4)]
    async with aiohttp.ClientSession() as http:
        url = limited.url + "/poll?channel=chat:held&since=0"
        held = asyncio.create_task(http.get(url))  # the fifth connection of 127.0.0.1
        await asyncio.sleep(0.5)
        async with http.get(url) as r:
            assert r.status == 503
            assert "max_connections_per_ip" in (await r.json())["error"]["message"]
        async with http.get(limited.url + "/chat|ann,0,xhr") as r:
            assert r.status == 503
        async with AsyncClient(limited.url, api_key="k") as api:
            await api.publish("chat:held", "wakes the held poll")
        response = await held
        assert response.status == 200
        assert (await response.json())["publications"][0]["data"] == "wakes the held poll"
        response.release()
    for c in clients:
        await c.close()


@pytest.mark.parametrize("trusted", [True, False])
async def test_per_ip_limits_see_the_forwarded_client_only_behind_a_trusted_proxy(
    trusted: bool,
) -> None:
    proxy = "127.0.0.1" if trusted else "10.9.9.9"
    srv = RunningServer(
        f'[server]\ntrusted_proxies = ["{proxy}"]\n\n[limits]\nmax_connections_per_ip = 2\n'
    )
    try:
        async with aiohttp.ClientSession() as http:
            kept: list[aiohttp.ClientWebSocketResponse] = []

            async def connect(client_ip: str) -> int | None:
                """The close code right after the handshake (None: it stays open)."""
                headers = {"X-Forwarded-For": f"{client_ip}, {proxy}"}
                ws = await http.ws_connect(srv.ws_url, headers=headers)
                kept.append(ws)
                await ws.send_str('{"id": 1, "op": "connect"}')
                msg = await ws.receive(timeout=5)
                return ws.close_code if msg.type is aiohttp.WSMsgType.CLOSE else None

            codes = [await connect(ip) for ip in ("192.0.2.1", "192.0.2.1", "192.0.2.2")]
            codes.append(await connect("192.0.2.1"))
        if trusted:  # two from .1, then one from .2; a third from .1 is one too many
            assert codes == [None, None, None, 3003]
            assert srv.wait_for_log("connection from 192.0.2.1 refused")
        else:  # X-Forwarded-For from an untrusted peer is ignored: all are 127.0.0.1
            assert codes == [None, None, 3003, 3003]
    finally:
        srv.stop()


async def test_channels_kept_are_bounded_on_every_route() -> None:
    """Streams are kept a day after their last publication; at max_channels no new one
    opens, and reading a channel never published opens none."""
    srv = RunningServer('[server]\napi_key = "k"\n\n[limits]\nmax_channels = 3\n')
    try:
        async with AsyncClient(srv.url, api_key="k") as api:
            for i in range(3):
                await api.publish(f"chat:{i}", i)
            with pytest.raises(OrbiterError) as info:
                await api.publish("chat:3", 3)
            assert info.value.status == 503
            assert "max_channels" in info.value.message
            assert (await api.publish("chat:0", "old channels go on"))["offset"] == 2
        async with aiohttp.ClientSession() as http:
            async with http.get(srv.url + "/poll?channel=chat:new&timeout=0.1") as r:
                assert r.status == 200
            async with http.get(srv.url + "/connection/sse?channel=chat:new") as r:
                assert r.status == 200
        client = await NativeClient.open(srv.ws_url)
        reply = await client.call("subscribe", channel="chat:new")
        assert reply["result"]["offset"] == 0
        refused = await client.call("publish", channel="chat:new", data=1)
        assert refused["error"]["code"] == 106
        assert "max_channels" in refused["error"]["message"]
        assert "result" in await client.call("subscribe", channel="chat:1")
        await client.close()
        totals = await stats(srv)
        assert totals["counters"]["limit_channels"] == 2
        assert totals["channels"] == 3
    finally:
        srv.stop()
