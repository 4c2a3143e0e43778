"""The admin routes of a real server: ``/api/admin/*`` lists and actions, the ``/admin/feed``
WebSocket on the reserved ``$admin`` channel, and the key that guards every one of them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest

from orbiter.client import AsyncClient
from orbiter.config.settings import Config
from orbiter.config.tcp import DevRoute
from orbiter.http.dev_proxy import own_prefixes, route_for
from orbiter.node import Node
from tests.support.server import RunningServer
from tests.support.sse_client import EventStream
from tests.support.wsclient import NativeClient

KEY = "admin-key"
HEADERS = {"X-API-Key": KEY}
ROOM = "adm:room"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    srv = RunningServer(f'[server]\napi_key = "{KEY}"\n')
    yield srv
    srv.stop()


async def _call(
    url: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    sent = {"Content-Type": "application/json", **(HEADERS if headers is None else headers)}
    data = None if body is None else orjson.dumps(body)
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url + path, data=data, headers=sent) as answer,
    ):
        return answer.status, orjson.loads(await answer.read())


ROUTES = [
    ("GET", "/api/admin/connections", None),
    ("GET", "/api/admin/channels", None),
    ("POST", "/api/admin/disconnect", {"client": "x"}),
    ("POST", "/api/admin/unsubscribe", {"user": "u", "channel": "c"}),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_every_admin_route_needs_the_key(
    server: RunningServer, method: str, path: str, body: Any
) -> None:
    for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "apikey nope"}):
        status, answer = await _call(server.url, method, path, body, headers)
        assert status == 401, (headers, answer)


async def test_admin_routes_are_off_without_a_configured_key() -> None:
    """An open API (no server.api_key) does not open the admin routes or the feed."""
    srv = RunningServer()
    try:
        for method, path, body in ROUTES:
            status, answer = await _call(srv.url, method, path, body, {})
            assert status == 403, (path, answer)
            assert "server.api_key" in answer["error"]["message"]
        async with aiohttp.ClientSession() as http, http.ws_connect(srv.url + "/admin/feed") as ws:
            await ws.send_str(orjson.dumps({"key": ""}).decode())
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.CLOSE
            assert msg.data == 4403
    finally:
        srv.stop()


async def test_lists_and_actions(server: RunningServer) -> None:
    alice = await NativeClient.open(server.ws_url, key="alice, 1, /adm")
    bob = await NativeClient.open(server.ws_url, key="bob, 1, /adm")
    stream = await EventStream.open(f"{server.url}/connection/sse?channel={quote(ROOM, safe='')}")
    try:
        await stream.next()
        for client in (alice, bob):
            assert "result" in await client.call("subscribe", channel=ROOM)
        async with AsyncClient(server.url, api_key=KEY) as app_server:
            for i in range(3):
                await app_server.publish(ROOM, {"n": i})

        status, listed = await _call(server.url, "GET", "/api/admin/connections")
        assert status == 200, listed
        rows = {row["client"]: row for row in listed["connections"]}
        assert listed["total"] == 3
        mine = rows[alice.connect_result["client"]]
        assert (mine["user"], mine["transport"], mine["ip"]) == ("alice", "websocket", "127.0.0.1")
        assert mine["channels"] == 2  # its key's channel and the room
        assert mine["age"] >= 0
        assert isinstance(mine["buffer"], int)
        assert sorted(row["transport"] for row in rows.values()) == [
            "sse",
            "websocket",
            "websocket",
        ]

        status, channels = await _call(server.url, "GET", "/api/admin/channels")
        assert status == 200, channels
        room = next(row for row in channels["channels"] if row["channel"] == ROOM)
        assert (room["subscribers"], room["offset"]) == (3, 3)
        assert channels["channels"][0] == room  # the most subscribed first

        # Unsubscribe a user: told, and no longer gets the room's publications.
        status, answer = await _call(
            server.url, "POST", "/api/admin/unsubscribe", {"user": "bob", "channel": ROOM}
        )
        assert (status, answer) == (200, {"unsubscribed": 1})
        pushes = [await bob.next_push() for _ in range(4)]
        assert pushes[-1] == {
            "push": "unsubscribed",
            "channel": ROOM,
            "reason": "unsubscribed by an administrator",
        }
        status, answer = await _call(
            server.url, "POST", "/api/admin/unsubscribe", {"user": "bob", "channel": ROOM}
        )
        assert status == 404, answer

        # Disconnect a connection: closed 3503 with the reason; an unknown one is a 404.
        client_id = alice.connect_result["client"]
        status, answer = await _call(
            server.url, "POST", "/api/admin/disconnect", {"client": client_id}
        )
        assert (status, answer) == (200, {"disconnected": 1})
        await asyncio.wait_for(alice.closed.wait(), 5)
        assert alice.ws.close_code == 3503
        assert alice.close_reason == "disconnected by an administrator"
        status, answer = await _call(
            server.url, "POST", "/api/admin/disconnect", {"client": client_id}
        )
        assert status == 404, answer
        status, answer = await _call(server.url, "POST", "/api/admin/disconnect", {"client": 5})
        assert status == 400, answer
    finally:
        await alice.close()
        await bob.close()
        await stream.close()


async def _feed(url: str, first: str) -> aiohttp.ClientWebSocketResponse:
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(url + "/admin/feed")
    ws._orbiter_http = http  # type: ignore[attr-defined]
    await ws.send_str(first)
    return ws


async def _close(ws: aiohttp.ClientWebSocketResponse) -> None:
    await ws.close()
    await ws._orbiter_http.close()  # type: ignore[attr-defined]


async def test_the_feed_needs_the_key_and_streams_samples(server: RunningServer) -> None:
    for first in ('{"key": "wrong"}', "not json", '{"nokey": 1}'):
        ws = await _feed(server.url, first)
        try:
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.CLOSE, first
            assert msg.data == 4401, first
        finally:
            await _close(ws)

    ws = await _feed(server.url, orjson.dumps({"key": KEY}).decode())
    try:
        hello = orjson.loads((await ws.receive(timeout=5)).data)["hello"]
        assert hello["interval"] == 1.0
        client = await NativeClient.open(server.ws_url)
        try:
            samples = [orjson.loads((await ws.receive(timeout=5)).data) for _ in range(2)]
            assert {sample["node"] for sample in samples} == {hello["node"]}
            assert samples[-1]["connections"].get("websocket", 0) >= 1
            assert samples[1]["time"] > samples[0]["time"]
            # The reserved channel is the server's: no client subscribes to it by name.
            refused = await client.call("subscribe", channel="$admin")
            assert "error" in refused, refused
            forged = await client.call("publish", channel="$admin", data={"node": hello["node"]})
            assert "error" in forged, forged
        finally:
            await client.close()
    finally:
        await _close(ws)


async def test_the_feed_refuses_other_origins(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(
                server.url + "/admin/feed", headers={"Origin": "http://evil.example"}
            )
        assert refused.value.status == 403


async def test_unauthenticated_feeds_count_in_the_connection_limits() -> None:
    """Feed sockets held without a key count in limits.max_connections_per_ip: past it the
    next ones from that address are refused 503 before their handshake (counted), another
    address still connects, and a feed that closes gives its place back."""
    limit = 4
    srv = RunningServer(
        f'[server]\napi_key = "{KEY}"\n[limits]\nmax_connections_per_ip = {limit}\n'
    )
    url = srv.url + "/admin/feed"
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            held = [await http.ws_connect(url) for _ in range(limit)]  # no key sent
            for _ in range(3):
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(url)
                assert refused.value.status == 503
            status, stats = await _call(srv.url, "GET", "/api/stats")
            assert status == 200, stats
            assert stats["counters"]["limit_connections_per_ip"] >= 3, stats
            other = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
            async with aiohttp.ClientSession(connector=other) as elsewhere:
                async with elsewhere.ws_connect(url) as ws:
                    await ws.send_str(orjson.dumps({"key": KEY}).decode())
                    assert "hello" in orjson.loads((await ws.receive(timeout=5)).data)
                async with elsewhere.ws_connect(srv.ws_url) as native:
                    await native.send_bytes(orjson.dumps({"id": 1, "op": "connect"}))
                    assert "result" in orjson.loads((await native.receive(timeout=5)).data)
            await held[0].close()
            for _ in range(100):  # the server sees the close (5 s at most)
                try:
                    again = await http.ws_connect(url)
                    break
                except aiohttp.WSServerHandshakeError:
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("a closed feed's place was not given back")
            await again.send_str(orjson.dumps({"key": KEY}).decode())
            assert "hello" in orjson.loads((await again.receive(timeout=5)).data)
            for ws in (*held, again):
                await ws.close()
    finally:
        srv.stop()


async def test_the_page_is_served_without_a_secret_and_not_framed(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/admin") as answer:
        assert answer.status == 200
        page = await answer.text()
        assert "/static/admin.js" in page
        assert KEY not in page
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]


async def test_actions_reach_every_worker() -> None:
    """--workers 2 on one port: whichever worker takes the call, the connection or the user
    is found on the other one too (asked through the engine)."""
    srv = RunningServer(f'[server]\napi_key = "{KEY}"\n', args=("--workers", "2"))
    clients: list[NativeClient] = []
    try:
        srv.wait_listening(2)
        for i in range(8):
            client = await NativeClient.open(srv.ws_url, key=f"u{i}, 1, /adm")
            assert "result" in await client.call("subscribe", channel=ROOM)
            clients.append(client)
        for i, client in enumerate(clients[:4]):
            status, answer = await _call(
                srv.url, "POST", "/api/admin/unsubscribe", {"user": f"u{i}", "channel": ROOM}
            )
            assert (status, answer) == (200, {"unsubscribed": 1})
            assert (await client.next_push())["push"] == "unsubscribed"
        for client in clients[4:]:
            status, answer = await _call(
                srv.url,
                "POST",
                "/api/admin/disconnect",
                {"client": client.connect_result["client"]},
            )
            assert (status, answer) == (200, {"disconnected": 1})
            await asyncio.wait_for(client.closed.wait(), 5)
            assert client.ws.close_code == 3503
    finally:
        for client in clients:
            await client.close()
        srv.stop()


def test_the_dev_proxy_never_forwards_metrics_or_the_dashboard() -> None:
    """With a dev proxy route owning /, these stay orbiter's (a key sent to /admin's API or
    the feed must not reach the app server)."""
    own = own_prefixes(Node(Config()))
    routes = (DevRoute("/", "http://127.0.0.1:9"),)
    for path in ("/metrics", "/admin", "/admin/feed", "/api/admin/connections"):
        assert route_for(path, routes, own) is None, path
    assert route_for("/administrator", routes, own) is not None
