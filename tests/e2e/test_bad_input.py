"""Malformed and oversize input over WebSocket: clear errors, other clients unharmed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp

from orbiter import AsyncClient
from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient


async def test_oversize_frame_closes_only_that_connection(
    start_server: Callable[..., RunningServer],
) -> None:
    srv = start_server("[limits]\nmax_message_size = 4096\n")
    bystander = await NativeClient.open(srv.ws_url)
    await bystander.call("subscribe", channel="chat:safe")
    async with AsyncClient(srv.url) as api:
        kept = await api.publish("chat:safe", "acknowledged before the attack")
        assert (await bystander.next_push())["data"] == "acknowledged before the attack"

        attacker = await NativeClient.open(srv.ws_url)
        await attacker.ws.send_str('{"id": 9, "op": "ping", "pad": "' + "x" * 10_000 + '"}')
        await attacker.closed.wait()
        assert attacker.ws.close_code == 1009
        await attacker.close()

        await api.publish("chat:safe", "after")
        assert (await bystander.next_push())["data"] == "after"
        page = await api.history("chat:safe")
    assert [p["offset"] for p in page["publications"]] == [kept["offset"], kept["offset"] + 1]
    assert (await bystander.call("ping"))["result"] == {}
    await bystander.close()


async def test_malformed_frames_get_errors_and_the_connection_goes_on(
    server: RunningServer,
) -> None:
    client = await NativeClient.open(server.ws_url)
    for raw in ("{", "[]", '{"op":"ping"}', "\x00\x01", '{"id":1,"op":"subscribe","channel":7}'):
        await client.ws.send_str(raw)
    await client.ws.send_bytes(b"\xff\xfe\xfd")
    assert (await client.call("ping"))["result"] == {}
    assert len(client.errors_without_id) == 5
    for error in client.errors_without_id:
        assert error["error"]["code"] == 107
        assert error["error"]["message"]
    assert client.replies[1]["error"]["code"] == 107
    await client.close()


async def test_commands_before_connect_are_refused(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url) as ws:
        await ws.send_str('{"id": 1, "op": "subscribe", "channel": "x"}')
        reply = await ws.receive_json()
        assert reply["error"]["code"] == 108


async def test_an_unparseable_request_gets_400_and_one_log_line(server: RunningServer) -> None:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"GET /connection/websocket HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Key1: 1 2\r\n\r\n"
    )
    async with asyncio.timeout(5):
        answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.0 400 ")
    assert b"Sec-WebSocket-Key1" in answer
    assert server.wait_for_log("WARNING aiohttp.server: Error handling request from 127.0.0.1: ")
    assert "Traceback" not in server.log
    async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url) as ws:
        assert not ws.closed
