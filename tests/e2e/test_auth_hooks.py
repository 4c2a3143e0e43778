"""App-server hooks against a real aiohttp app server: allow, deny, rewrite, time out, crash.

The browser's cookie (sent on the WebSocket handshake) reaches the app, which
decides who the connection is, which channels it may join and what it may
publish. Hooks that time out, crash or answer nonsense deny (fail closed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import orjson
import pytest

from orbiter import AsyncClient
from tests.support.app_server import AppServer
from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient


@pytest.fixture(scope="module")
def app() -> Iterator[AppServer]:
    server = AppServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hooked(app: AppServer) -> Iterator[RunningServer]:
    srv = RunningServer(
        f"""
[server]
api_key = "k"

[hooks]
connect_url = "{app.url("/connect")}"
subscribe_url = "{app.url("/subscribe")}"
publish_url = "{app.url("/publish")}"
timeout = 0.5

[[channel]]
match = "hooked:*"
subscribe = "hook"
client_publish = true
publish_hook = true
presence = true
"""
    )
    yield srv
    srv.stop()


@pytest.fixture
async def api(hooked: RunningServer) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(hooked.url, api_key="k") as client:
        yield client


async def open_with_cookie(url: str, cookie: str, **connect: Any) -> NativeClient:
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(url, headers={"Cookie": f"session={cookie}"})
    client = NativeClient(session, ws)
    reply = await client.call("connect", **connect)
    client.connect_result = reply
    return client


async def refused(url: str, cookie: str) -> tuple[int, int | None]:
    client = await open_with_cookie(url, cookie)
    await client.closed.wait()
    code = client.connect_result["error"]["code"]
    await client.close()
    return code, client.ws.close_code


async def test_connect_hook_sets_the_user_from_the_browsers_cookie(
    hooked: RunningServer, app: AppServer
) -> None:
    client = await open_with_cookie(hooked.ws_url, "user-alice", user="mallory", key="x, 0, /y")
    # A key the hook did not grant (x's) is refused: the cookie says alice.
    assert client.connect_result["error"]["code"] == 103
    await client.close()
    client = await open_with_cookie(hooked.ws_url, "user-alice")
    assert "result" in client.connect_result
    _, headers, body = next(c for c in reversed(app.calls) if c[0] == "connect")
    assert headers["Cookie"] == "session=user-alice"
    assert body["transport"] == "websocket"
    assert (await client.call("subscribe", channel="hooked:alice"))["result"]
    presence = (await client.call("presence", channel="hooked:alice"))["result"]
    assert presence["users"] == [{"user": "alice", "info": {"via": "hook"}, "clients": 1}]
    await client.close()


@pytest.mark.parametrize("cookie", ["nobody", "slow", "crash", "garbage"])
async def test_connect_hook_denials_time_outs_and_crashes_refuse(
    hooked: RunningServer, cookie: str
) -> None:
    assert await refused(hooked.ws_url, cookie) == (103, 3503)


async def test_subscribe_hook_allows_denies_and_fails_closed(
    hooked: RunningServer, api: AsyncClient
) -> None:
    client = await open_with_cookie(hooked.ws_url, "user-bob")
    assert "result" in await client.call("subscribe", channel="hooked:bob")
    for channel in ("hooked:alice", "hooked:slow", "hooked:crash", "hooked:garbage"):
        reply = await client.call("subscribe", channel=channel)
        assert reply["error"]["code"] == 103, (channel, reply)
    channels = await api.channels()
    assert "hooked:alice" not in channels
    assert "hooked:slow" not in channels
    assert (await client.call("ping"))["result"] == {}  # the connection goes on
    await client.close()


async def test_publish_hook_rewrites_denies_and_fails_closed(
    hooked: RunningServer, api: AsyncClient
) -> None:
    writer = await open_with_cookie(hooked.ws_url, "user-carol")
    reader = await open_with_cookie(hooked.ws_url, "user-dave")
    for client in (writer, reader):
        assert "result" in await client.call("subscribe", channel="hooked:lobby")
    reply = await writer.call("publish", channel="hooked:lobby", data={"text": "hello"})
    assert "result" in reply
    push = await reader.next_push()
    assert push["data"] == {"text": "HELLO", "by": "carol"}
    assert "result" in await writer.call("publish", channel="hooked:lobby", data={"text": "keep"})
    assert (await reader.next_push())["data"] == {"text": "keep"}
    # An answer longer than one read of the app's connection is read whole.
    assert "result" in await writer.call("publish", channel="hooked:lobby", data={"text": "big"})
    assert (await reader.next_push())["data"] == {"text": "b" * 300_000}
    for text in ("deny", "slow", "crash"):
        reply = await writer.call("publish", channel="hooked:lobby", data={"text": text})
        assert reply["error"]["code"] == 103, (text, reply)
    assert await reader.pushes_now(0.3) == []
    history = await api.history("hooked:lobby")
    assert [p["data"] for p in history["publications"]] == [
        {"text": "HELLO", "by": "carol"},
        {"text": "keep"},
        {"text": "b" * 300_000},
    ]
    await writer.close()
    await reader.close()


async def test_hooks_see_the_cookie_over_sockjs_too(hooked: RunningServer, app: AppServer) -> None:
    url = hooked.url.replace("http://", "ws://") + "/sockjs/websocket"
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url, headers={"Cookie": "session=user-erin"})
        await ws.send_str(orjson.dumps({"id": 1, "op": "connect"}).decode())
        reply = orjson.loads((await ws.receive(timeout=5)).data)
        assert "result" in reply, reply
        await ws.send_str(
            orjson.dumps({"id": 2, "op": "subscribe", "channel": "hooked:erin"}).decode()
        )
        assert "result" in orjson.loads((await ws.receive(timeout=5)).data)
        await ws.close()
    connects = [c for c in app.calls if c[0] == "connect" and c[2]["transport"] == "sockjs"]
    assert connects[-1][1]["Cookie"] == "session=user-erin"


async def test_an_unreachable_app_server_denies(start_server: Any) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on (bound, never listening)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        srv = start_server(f'[hooks]\nconnect_url = "http://127.0.0.1:{port}/connect"\n')
        assert await refused(srv.ws_url, "user-alice") == (103, 3503)
    assert srv.wait_for_log("could not be reached")
