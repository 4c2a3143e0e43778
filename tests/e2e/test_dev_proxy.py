"""The dev reverse proxy (Orbited 0.3's [proxy]) in front of a real aiohttp app server."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from orbiter.ports import free_port
from tests.support.server import RunningServer

#: Orbited 0.3's orbited.cfg (PylonsChat), as in tests/fixtures.
#: The seed's config; its [listen] line keeps it off the event port 9000 that a config
#: without one opens (tests/e2e/test_bare_start.py), so that two can run at once.
ORBITED_03 = (Path(__file__).parent.parent / "fixtures" / "orbited03.cfg").read_text() + (
    "\n[listen]\nhttp://127.0.0.1:0\n"
)


class AppServer:
    """A small app server: echo, a streamed response that waits for the test, a WebSocket."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.port = free_port()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/", self.index)
        app.router.add_get("/hello", self.hello)
        app.router.add_post("/echo", self.echo)
        app.router.add_get("/stream", self.stream)
        app.router.add_get("/ws", self.ws)
        self.runner = web.AppRunner(app)

    async def start(self) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(text="the app's own front page")

    async def hello(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "path": request.path_qs,
                "forwarded_host": request.headers.get("X-Forwarded-Host"),
                "cookie": request.headers.get("Cookie"),
            },
            headers={"Set-Cookie": "app=1; Path=/"},
        )

    async def echo(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        async for chunk in request.content.iter_chunked(65536):
            await response.write(chunk)
        await response.write_eof()
        return response

    async def stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"first ")
        await asyncio.wait_for(self.release.wait(), 20)
        await response.write(b"second")
        await response.write_eof()
        return response

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("chat",))
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                await ws.send_str("app: " + msg.data)
            elif msg.type is aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data[::-1])
        return ws


@pytest.fixture
async def app_server() -> AsyncIterator[AppServer]:
    app = AppServer()
    await app.start()
    yield app
    await app.runner.cleanup()


@pytest.fixture
def proxied(app_server: AppServer, start_server: Callable[..., RunningServer]) -> RunningServer:
    # The seed's file, its app port rewritten to the test app's.
    text = ORBITED_03.replace("127.0.0.1:5000", f"127.0.0.1:{app_server.port}")
    server = start_server(text)
    assert server.wait_for_log("dev proxy on")
    return server


async def test_routes_split_between_orbiter_and_the_app(
    proxied: RunningServer, app_server: AppServer
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(proxied.url + "/") as r:
            assert await r.text() == "the app's own front page"
        async with http.get(proxied.url + "/hello?x=1&y=%20", headers={"Cookie": "c=2"}) as r:
            body = await r.json()
            assert body["path"] == "/hello?x=1&y=%20"
            assert body["forwarded_host"] == proxied.url.removeprefix("http://")
            assert body["cookie"] == "c=2"
            assert r.headers["Set-Cookie"].startswith("app=1")
        async with http.get(proxied.url + "/static/orbiter.js") as r:  # orbiter's own
            assert "TCPSocket" in await r.text()
        async with http.get(proxied.url + "/api/channels") as r:
            assert r.status == 200
        async with http.get(proxied.url + "/orbited/nothing-here") as r:  # ORBITED: orbiter
            assert r.status == 404
            assert "the app" not in await r.text()


async def test_bodies_stream_both_ways(proxied: RunningServer, app_server: AppServer) -> None:
    payload = os.urandom(8 * 1024 * 1024)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(payload), 65536):
            yield payload[i : i + 65536]

    async with aiohttp.ClientSession() as http:
        async with http.post(proxied.url + "/echo", data=chunks()) as r:
            assert await r.read() == payload
        async with http.get(proxied.url + "/stream") as r:
            first = await asyncio.wait_for(r.content.readexactly(6), 10)
            assert first == b"first "  # arrived before the app finished the response
            app_server.release.set()
            assert await r.read() == b"second"


async def test_websocket_through_the_proxy(proxied: RunningServer, app_server: AppServer) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(proxied.url + "/ws", protocols=("chat",))
        assert ws.protocol == "chat"
        await ws.send_str("hi")
        assert (await ws.receive(timeout=10)).data == "app: hi"
        await ws.send_bytes(b"\x00\x01\x02")
        assert (await ws.receive(timeout=10)).data == b"\x02\x01\x00"
        await ws.close()


async def test_app_server_down_is_502(start_server: Callable[..., RunningServer]) -> None:
    port = free_port()
    server = start_server(ORBITED_03.replace("127.0.0.1:5000", f"127.0.0.1:{port}"))
    async with aiohttp.ClientSession() as http, http.get(server.url + "/chat") as r:
        assert r.status == 502
        assert f"127.0.0.1:{port}" in await r.text()


async def test_websocket_upgrade_the_app_refuses_is_502(
    proxied: RunningServer, app_server: AppServer
) -> None:
    # /hello is a plain page: the app answers the upgrade with 200, not 101.
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(proxied.url + "/hello")
        assert refused.value.status == 502
        upgrade = {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        }
        async with http.get(proxied.url + "/hello", headers=upgrade) as r:
            assert r.status == 502
            assert "refused the WebSocket upgrade" in await r.text()
