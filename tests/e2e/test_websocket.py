"""The native protocol over a real WebSocket to a real ``orbiter serve``."""

from __future__ import annotations

import orjson

from orbiter import AsyncClient
from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient


async def test_api_publication_reaches_websocket_subscribers(server: RunningServer) -> None:
    a = await NativeClient.open(server.ws_url)
    b = await NativeClient.open(server.ws_url)
    for client in (a, b):
        reply = await client.call("subscribe", channel="e2e:fanout")
        assert reply["result"]["channel"] == "e2e:fanout"
    async with AsyncClient(server.url) as api:
        result = await api.publish("e2e:fanout", {"n": 1})
    for client in (a, b):
        push = await client.next_push()
        assert push == {
            "push": "pub",
            "channel": "e2e:fanout",
            "offset": result["offset"],
            "data": {"n": 1},
        }
    await a.close()
    await b.close()


async def test_browser_publish_reaches_others_and_is_acknowledged(server: RunningServer) -> None:
    sender = await NativeClient.open(server.ws_url)
    reader = await NativeClient.open(server.ws_url)
    await reader.call("subscribe", channel="chat:e2e")
    reply = await sender.call("publish", channel="chat:e2e", data="hello")
    assert reply["result"]["offset"] >= 1
    push = await reader.next_push()
    assert push["data"] == "hello"
    denied = await sender.call("publish", channel="private", data="x")
    assert denied["error"]["code"] == 103
    await sender.close()
    await reader.close()


async def test_reconnect_with_since_recovers_exactly_once(server: RunningServer) -> None:
    channel = "e2e:recover"
    client = await NativeClient.open(server.ws_url)
    sub = (await client.call("subscribe", channel=channel))["result"]
    async with AsyncClient(server.url) as api:
        await api.publish(channel, "before")
        last = await client.next_push()
        await client.close()
        for text in ("gap-1", "gap-2", "gap-3"):
            await api.publish(channel, text)
        again = await NativeClient.open(server.ws_url)
        since = {"offset": last["offset"], "epoch": sub["epoch"]}
        result = (await again.call("subscribe", channel=channel, since=since))["result"]
        assert result["recovered"] is True
        assert [p["data"] for p in result["publications"]] == ["gap-1", "gap-2", "gap-3"]
        await api.publish(channel, "live")
    pushes = [await again.next_push()] + await again.pushes_now()
    assert [p["data"] for p in pushes] == ["live"]
    await again.close()


async def test_orbited_key_connection_receives_events(server: RunningServer) -> None:
    client = await NativeClient.open(server.ws_url, user="carol", session="0", location="/e2e")
    assert client.connect_result["key"]["key"] == "carol, 0, /e2e"
    async with AsyncClient(server.url) as api:
        results = await api.event(["carol,0,/e2e", "nobody, 0, /e2e"], "<b>hi</b>")
        assert [r["key"] for r in results] == ["carol, 0, /e2e", "nobody, 0, /e2e"]
        channels = await api.channels()
    assert channels["$key:carol, 0, /e2e"] == 1
    push = await client.next_push()
    assert push["data"] == "<b>hi</b>"
    assert push["channel"] == "$key:carol, 0, /e2e"
    await client.close()


async def test_several_commands_in_one_frame(server: RunningServer) -> None:
    client = await NativeClient.open(server.ws_url)
    batch = b"\n".join(
        orjson.dumps(c)
        for c in (
            {"id": 101, "op": "subscribe", "channel": "chat:batch"},
            {"id": 102, "op": "publish", "channel": "chat:batch", "data": 1},
            {"id": 103, "op": "ping"},
        )
    )
    await client.ws.send_bytes(batch)
    assert "result" in await client.reply(101)
    assert "result" in await client.reply(102)
    assert await client.reply(103) == {"id": 103, "result": {}}
    assert (await client.next_push())["data"] == 1
    await client.close()
