"""The RPC proxy on a real ``orbiter serve`` against a real app server: identity, errors, limits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from tests.support.keys import SECRET, token
from tests.support.rpc_app import RpcApp
from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient


@pytest.fixture(scope="module")
def app() -> Iterator[RpcApp]:
    app = RpcApp()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def server(app: RpcApp) -> Iterator[RunningServer]:
    config = f"""
[auth]
secret = "{SECRET}"

[rpc]
url = "{app.url}"
timeout = 1

[live]
call_rate = 1000
call_burst = 1000
max_calls = 2
"""
    server = RunningServer(config)
    yield server
    server.stop()


@pytest.fixture
async def alice(server: RunningServer) -> AsyncIterator[NativeClient]:
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(server.ws_url, headers={"Cookie": "session=s3cr3t"})
    client = NativeClient(http, ws)
    reply = await client.call("connect", token=token("alice"))
    assert "result" in reply, reply
    client.connect_result = reply["result"]
    yield client
    await ws.close()
    await http.close()


async def test_the_app_hears_who_calls_from_the_token_and_the_cookie(
    app: RpcApp, alice: NativeClient
) -> None:
    # What the browser claims is not what the app is told: the token's sub is.
    reply = await alice.call("rpc", method="whoami", data={"user": "mallory"})
    assert reply["result"]["value"] == {
        "user": "alice",
        "client": alice.connect_result["client"],
        "cookie": "s3cr3t",
    }
    headers, body = app.calls[-1]
    assert body == {
        "method": "whoami",
        "data": {"user": "mallory"},
        "client": alice.connect_result["client"],
        "user": "alice",
    }
    assert headers["Content-Type"] == "application/json"


async def test_answers_and_errors(alice: NativeClient) -> None:
    data: Any = {"a": [1, 2.5, None, "é"]}
    assert (await alice.call("rpc", method="echo", data=data))["result"] == {"value": data}
    denied = await alice.call("rpc", method="deny")
    assert denied["error"] == {"code": 113, "type": "Forbidden", "message": "not you"}
    crashed = await alice.call("rpc", method="crash")
    assert crashed["error"] == {"code": 115, "message": "the app server answered HTTP 500"}
    nonsense = await alice.call("rpc", method="nonsense")
    assert nonsense["error"]["code"] == 115
    slow = await alice.call("rpc", method="slow")
    assert slow["error"] == {
        "code": 114,
        "message": "the app server did not answer in 1 s (rpc.timeout)",
    }
    big = await alice.call("rpc", method="big")
    assert big["result"]["value"] == "x" * 300_000
    bad = await alice.call("rpc", method=5)
    assert bad["error"]["code"] == 107


async def test_rpcs_running_at_once_are_limited(alice: NativeClient) -> None:
    import asyncio

    ids = []
    for _ in range(3):
        ids.append(alice._ids.__next__())
        await alice.ws.send_json({"id": ids[-1], "op": "rpc", "method": "slow"})
    third = await alice.reply(ids[2])
    assert third["error"]["code"] == 106
    assert "live.max_calls" in third["error"]["message"]
    await asyncio.gather(*(alice.reply(i) for i in ids[:2]))


async def test_without_a_proxy_rpc_is_not_exposed() -> None:
    server = RunningServer()
    try:
        client = await NativeClient.open(server.ws_url)
        reply = await client.call("rpc", method="echo", data=1)
        assert reply["error"] == {"code": 112, "message": "no RPC proxy is configured (rpc.url)"}
        await client.ws.close()
        await client._session.close()
    finally:
        server.stop()


async def test_an_unreachable_app_server_is_115() -> None:
    server = RunningServer('[rpc]\nurl = "http://127.0.0.1:9/rpc"\n')
    try:
        client = await NativeClient.open(server.ws_url)
        reply = await client.call("rpc", method="echo", data=1)
        assert reply["error"]["code"] == 115
        assert reply["error"]["message"].startswith("the app server cannot be reached")
        await client.ws.close()
        await client._session.close()
    finally:
        server.stop()
