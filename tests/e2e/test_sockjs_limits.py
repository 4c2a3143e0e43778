"""Bad input, limits and timing of SockJS sessions, against servers with small settings."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator

import aiohttp
import pytest

from tests.support.rawhttp import RawConnection, fetch
from tests.support.server import RunningServer
from tests.support.sockjs_urls import SockJSUrls

SMALL = """
[limits]
max_message_size = 1000
max_http_body = 4000
outgoing_buffer = 2500

[sockjs]
test_services = true
heartbeat = 0.4
disconnect_delay = 0.6
"""


@pytest.fixture(scope="module")
def small() -> Iterator[SockJSUrls]:
    server = RunningServer(SMALL)
    yield SockJSUrls(server)
    server.stop()


async def opened(base: str) -> str:
    url = SockJSUrls.session(base)
    assert (await fetch(url + "/xhr", "POST"))[1] == b"o\n"
    return url


async def test_a_body_over_the_limit_is_refused_and_the_session_goes_on(small: SockJSUrls) -> None:
    url = await opened(small.echo)
    body = json.dumps(["x" * 900] * 5).encode()
    assert len(body) > 4000
    head, _ = await fetch(url + "/xhr_send", "POST", body=body)
    assert head.status == 413
    assert (await fetch(url + "/xhr_send", "POST", body=b'["fine"]'))[0].status == 204
    assert (await fetch(url + "/xhr", "POST"))[1] == b'a["fine"]\n'


async def test_a_message_over_the_limit_closes_only_its_session(small: SockJSUrls) -> None:
    url = await opened(small.echo)
    other = await opened(small.echo)
    head, body = await fetch(url + "/xhr_send", "POST", body=json.dumps(["é" * 600]).encode())
    assert head.status == 413
    assert b"Message too big" in body
    assert (await fetch(url + "/xhr", "POST"))[1] == b'c[1009,"message too big"]\n'
    await fetch(other + "/xhr_send", "POST", body=b'["still here"]')
    assert (await fetch(other + "/xhr", "POST"))[1] == b'a["still here"]\n'


async def test_jsonp_send_has_the_same_limits(small: SockJSUrls) -> None:
    url = SockJSUrls.session(small.echo)
    await fetch(url + "/jsonp?c=cb")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    head, _ = await fetch(url + "/jsonp_send", "POST", headers=form, body=b"d=" + b"x" * 5000)
    assert head.status == 413
    head, _ = await fetch(
        url + "/jsonp_send", "POST", headers=form, body=b"d=%5B%22" + b"y" * 1200 + b"%22%5D"
    )
    assert head.status == 413
    assert (await fetch(url + "/jsonp?c=cb"))[1] == b'/**/cb("c[1009,\\"message too big\\"]");\r\n'


async def test_a_client_that_does_not_read_is_closed_as_slow(small: SockJSUrls) -> None:
    url = await opened(small.echo)
    for _ in range(3):
        await fetch(url + "/xhr_send", "POST", body=json.dumps(["z" * 900]).encode())
    assert (await fetch(url + "/xhr", "POST"))[1] == b'c[3001,"outgoing buffer full"]\n'


async def test_websocket_message_over_the_limit_gets_1009(small: SockJSUrls) -> None:
    url = SockJSUrls.ws(SockJSUrls.session(small.echo) + "/websocket")
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        assert (await ws.receive(5)).data == "o"
        await ws.send_str(json.dumps(["w" * 1500]))
        assert (await ws.receive(5)).data == 'c[1009,"message too big"]'
        assert (await ws.receive(5)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_raw_websocket_message_over_the_limit_is_closed_1009(small: SockJSUrls) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(SockJSUrls.ws(small.echo + "/websocket")) as ws,
    ):
        await ws.send_str("r" * 1500)
        assert (await ws.receive(5)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1009


# --------------------------------------------------------------------------- timing


async def test_a_waiting_poll_gets_a_heartbeat(small: SockJSUrls) -> None:
    url = await opened(small.echo)
    started = asyncio.get_running_loop().time()
    assert (await fetch(url + "/xhr", "POST"))[1] == b"h\n"
    assert 0.3 < asyncio.get_running_loop().time() - started < 2.0


async def test_streams_and_websockets_get_heartbeats(small: SockJSUrls) -> None:
    url = SockJSUrls.session(small.echo)
    conn = await RawConnection.open(url)
    try:
        await conn.send_request("POST", "/" + url.split("/", 3)[3] + "/xhr_streaming")
        await conn.read_head()
        await conn.read_chunk()
        assert await conn.read_chunk() == b"o\n"
        assert await conn.read_chunk() == b"h\n"
        assert await conn.read_chunk() == b"h\n"
    finally:
        await conn.close()
    ws_url = SockJSUrls.ws(SockJSUrls.session(small.echo) + "/websocket")
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url) as ws:
        assert (await ws.receive(5)).data == "o"
        assert (await ws.receive(5)).data == "h"


async def test_a_session_without_receiver_times_out(small: SockJSUrls) -> None:
    url = await opened(small.echo)
    await fetch(url + "/xhr_send", "POST", body=b'["lost"]')
    await asyncio.sleep(0.6 + 1.5)  # the delay, and the sweep that notices it
    assert (await fetch(url + "/xhr_send", "POST", body=b'["x"]'))[0].status == 404
    assert (await fetch(url + "/xhr", "POST"))[1] == b"o\n"


async def test_a_session_with_polls_in_time_stays(small: SockJSUrls) -> None:
    url = await opened(small.echo)
    for _ in range(4):
        await asyncio.sleep(0.3)
        assert (await fetch(url + "/xhr_send", "POST", body=b'["k"]'))[0].status == 204
        assert (await fetch(url + "/xhr", "POST"))[1] == b'a["k"]\n'


async def test_a_closed_session_is_forgotten_after_the_delay(small: SockJSUrls) -> None:
    url = await opened(small.close)
    assert (await fetch(url + "/xhr", "POST"))[1] == b'c[3000,"Go away!"]\n'
    await asyncio.sleep(0.6 + 1.5)
    assert (await fetch(url + "/xhr", "POST"))[1] == b"o\n"


async def test_test_services_are_off_by_default(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server()
    assert (await fetch(server.url + "/sockjs/echo/info"))[0].status == 404
    head, body = await fetch(server.url + "/sockjs/info")
    assert head.status == 200
    assert json.loads(body)["websocket"] is True


async def test_the_prefix_is_configurable(start_server: Callable[..., RunningServer]) -> None:
    server = start_server('[sockjs]\nprefix = "/rt/sock"\nresponse_limit = 50000\n')
    assert (await fetch(server.url + "/rt/sock"))[1] == b"Welcome to SockJS!\n"
    assert (await fetch(server.url + "/sockjs"))[0].status == 404
