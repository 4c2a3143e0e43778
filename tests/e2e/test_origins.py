"""Origin checks on every push route of a real server, and CORS for allowed origins."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import pytest

from tests.support.server import RunningServer

EVIL = "http://evil.example"


def routes(srv: RunningServer) -> list[tuple[str, str]]:
    """(method, URL) of a request on each push route."""
    base = srv.url
    return [
        ("GET", base + "/connection/sse?channel=chat:o"),
        ("GET", base + "/poll?channel=chat:o"),
        ("GET", base + "/chat|ann,0,xhr"),
        ("POST", base + "/sockjs/000/origin1/xhr"),
        ("GET", base + "/sockjs/info"),
    ]


async def ws_status(url: str, origin: str | None) -> int:
    headers = {"Origin": origin} if origin else {}
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(url, headers=headers)
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        await ws.close()
        return 101


async def test_a_foreign_origin_is_refused_everywhere(server: RunningServer) -> None:
    ws_urls = [server.ws_url, server.url.replace("http", "ws") + "/sockjs/websocket"]
    for url in ws_urls:
        assert await ws_status(url, EVIL) == 403, url
        assert await ws_status(url, "null") == 403, url
        assert await ws_status(url, server.url) == 101, url  # same origin
        assert await ws_status(url, None) == 101, url  # not a browser
        assert await ws_status(url, "http://localhost:5173") == 101  # development
    async with aiohttp.ClientSession() as http:
        for method, url in routes(server):
            async with http.request(
                method, url, headers={"Origin": EVIL}, timeout=aiohttp.ClientTimeout(total=5)
            ) as r:
                assert r.status == 403, url
                assert "evil.example" in (await r.json())["error"]["message"]
                assert "Access-Control-Allow-Origin" not in r.headers
            # A JSONP script tag sends no Origin, but the browser says it is cross-site.
            headers = {"Sec-Fetch-Site": "cross-site", "Referer": EVIL + "/page.html"}
            async with http.request(method, url, headers=headers) as r:
                assert r.status == 403, url


async def test_allowed_origins_get_cors_and_others_none(
    start_server: Callable[..., RunningServer],
) -> None:
    srv = start_server(
        '[server]\napi_key = "k"\n\n[origins]\nallow = ["https://app.example"]\nlocalhost = false\n'
    )
    async with aiohttp.ClientSession() as http:
        headers = {"Origin": "https://app.example"}
        async with http.get(srv.url + "/poll?channel=chat:o", headers=headers) as r:
            assert r.status == 200
            assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
            assert r.headers["Access-Control-Allow-Credentials"] == "true"
        async with http.get(srv.url + "/sockjs/info", headers=headers) as r:
            assert r.status == 200
            assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
        local = {"Origin": "http://localhost:3000"}
        async with http.get(srv.url + "/poll?channel=chat:o", headers=local) as r:
            assert r.status == 403
        async with http.get(srv.url + "/api/stats", headers={"X-API-Key": "wrong"}) as r:
            assert r.status == 401
        async with http.get(srv.url + "/api/stats", headers={"X-API-Key": "k"}) as r:
            stats = await r.json()
    assert stats["counters"]["origin_refused"] == 1
    assert stats["counters"]["api_key_refused"] == 1
    assert await ws_status(srv.ws_url, "https://app.example") == 101
    assert await ws_status(srv.ws_url, "http://localhost:3000") == 403
    assert srv.wait_for_log("origin 'http://localhost:3000' refused")


@pytest.mark.parametrize("origin", ["https://app.example.evil", "https://app.example:444"])
async def test_near_misses_are_foreign(
    start_server: Callable[..., RunningServer], origin: str
) -> None:
    srv = start_server('[origins]\nallow = ["https://app.example"]\n')
    assert await ws_status(srv.ws_url, origin) == 403
