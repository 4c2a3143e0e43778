"""The TCP proxy on a server that requires auth, against a real ``orbiter serve`` and a real
TCP backend: a relay opens with a valid connection token (``?token=``, a Bearer header, or
the SockJS connect message's ``token``), and is refused with 4401 and a counter without one,
with a forged one or with an expired one, before any backend connection is made."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import orjson
import pytest

from orbiter.ports import free_port
from orbiter.protocol.tcp_websockify import NATIVE_SUBPROTOCOL
from tests.support.keys import SECRET, token
from tests.support.server import RunningServer
from tests.support.tcp_backends import Echo

#: The /tcp subprotocol of orbiter's framing (the open message first); none: websockify.
ORBITER_TCP = (NATIVE_SUBPROTOCOL,)

ECHO = free_port()


@pytest.fixture(scope="module")
def auth_server() -> Iterator[RunningServer]:
    srv = RunningServer(
        f"""
[server]
api_key = "k"

[auth]
secret = "{SECRET}"

[[tcp.access]]
to = "127.0.0.1:{ECHO}"
"""
    )
    yield srv
    srv.stop()


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    backend = await Echo(ECHO).start()
    yield backend
    await backend.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def tcp_url(srv: RunningServer, query: str = "") -> str:
    url = srv.url.replace("http://", "ws://") + f"/tcp?host=127.0.0.1&port={ECHO}"
    return url + (f"&{query}" if query else "")


async def counters(srv: RunningServer, http: aiohttp.ClientSession) -> dict[str, int]:
    async with http.get(srv.url + "/api/stats", headers={"X-API-Key": "k"}) as r:
        body: dict[str, Any] = await r.json()
    return dict(body["counters"])


async def first_message(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    async with asyncio.timeout(10):
        return await ws.receive()


async def echoes(ws: aiohttp.ClientWebSocketResponse) -> None:
    """The relay is open and carries bytes to the backend and back."""
    msg = await first_message(ws)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    assert msg.json()["type"] == "open"
    await ws.send_bytes(b"ping\r\n")
    got = b""
    async with asyncio.timeout(10):
        while got != b"ping\r\n":
            msg = await ws.receive()
            assert msg.type is aiohttp.WSMsgType.BINARY, msg
            got += msg.data


async def test_a_valid_token_opens_a_relay(
    auth_server: RunningServer, echo: Echo, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(
        tcp_url(auth_server, f"token={token('alice')}"), protocols=ORBITER_TCP
    ) as ws:
        await echoes(ws)
    headers = {"Authorization": f"Bearer {token('bob')}"}
    async with http.ws_connect(tcp_url(auth_server), headers=headers, protocols=ORBITER_TCP) as ws:
        await echoes(ws)
    # The websockify form: the target in the path; ?token= is then the token, not a target.
    base = auth_server.url.replace("http://", "ws://")
    url = f"{base}/tcp/127.0.0.1:{ECHO}?token={token('dan')}"
    async with http.ws_connect(url, protocols=("binary",)) as ws:
        await ws.send_bytes(b"vnc\r\n")
        reply = await first_message(ws)
        assert reply.data == b"vnc\r\n", reply
    assert echo.connections == 3


@pytest.mark.parametrize(
    ("query", "reason_part", "counter"),
    [
        ("", "needs a connection token", "auth_unauthorized"),
        (
            f"token={token('alice', key='not-the-secret-0123456789abcdef0123')}",
            "",
            "auth_unauthorized",
        ),
        (f"token={token('alice', ttl=-30)}", "expired", "auth_expired"),
    ],
    ids=["missing", "forged", "expired"],
)
async def test_relays_without_a_valid_token_are_refused_with_4401(
    auth_server: RunningServer,
    echo: Echo,
    http: aiohttp.ClientSession,
    query: str,
    reason_part: str,
    counter: str,
) -> None:
    before = (await counters(auth_server, http)).get(counter, 0)
    # Someone else's relay is open meanwhile, and stays so.
    async with http.ws_connect(
        tcp_url(auth_server, f"token={token('carol')}"), protocols=ORBITER_TCP
    ) as other:
        await echoes(other)
        async with http.ws_connect(tcp_url(auth_server, query), protocols=ORBITER_TCP) as ws:
            msg = await first_message(ws)
            assert msg.type is aiohttp.WSMsgType.CLOSE, msg
            assert msg.data == 4401
            assert reason_part in str(msg.extra)
        await other.send_bytes(b"still\r\n")
        reply = await first_message(other)
        assert reply.data == b"still\r\n"
    assert echo.connections == 1  # the refused relay never reached the backend
    assert (await counters(auth_server, http))[counter] == before + 1
    assert auth_server.wait_for_log("tcp proxy: 127.0.0.1 refused")


async def _sockjs_frame(ws: aiohttp.ClientWebSocketResponse) -> str:
    msg = await first_message(ws)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    return str(msg.data)


async def _sockjs_connect(ws: aiohttp.ClientWebSocketResponse, **extra: str) -> str:
    assert await _sockjs_frame(ws) == "o"
    connect = {"type": "connect", "host": "127.0.0.1", "port": ECHO, **extra}
    await ws.send_str(orjson.dumps([orjson.dumps(connect).decode()]).decode())
    return await _sockjs_frame(ws)


async def test_over_sockjs_the_token_is_in_the_connect_message(
    auth_server: RunningServer, echo: Echo, http: aiohttp.ClientSession
) -> None:
    base = auth_server.url.replace("http://", "ws://") + "/tcp/sockjs/000"
    async with http.ws_connect(f"{base}/tok1/websocket") as ws:
        reply = await _sockjs_connect(ws, token=token("alice"))
        assert orjson.loads(orjson.loads(reply[1:])[0])["type"] == "open"
    for name, extra in (("none1", {}), ("old1", {"token": token("alice", ttl=-30)})):
        async with http.ws_connect(f"{base}/{name}/websocket") as ws:
            close = orjson.loads((await _sockjs_connect(ws, **extra))[1:])
            assert close[0] == 4401, close
    assert echo.connections == 1
