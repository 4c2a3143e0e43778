"""The admin list and actions on two ``orbiter serve`` nodes sharing a real ``redis-server``:
either node lists both nodes' connections, each row naming the node that holds it, and an
action sent to one node reaches a connection held by the other."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest

from tests.support.redis_server import RedisServer
from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient

KEY = "admin-key"
HEADERS = {"X-API-Key": KEY, "Content-Type": "application/json"}
ROOM = "adm:room"


@pytest.fixture
def nodes() -> Iterator[tuple[RunningServer, RunningServer]]:
    redis = RedisServer()
    started: list[RunningServer] = []
    try:
        for _ in range(2):
            config = f'[server]\napi_key = "{KEY}"\n'
            started.append(RunningServer(config, args=("--engine", redis.url)))
        yield started[0], started[1]
    finally:
        for server in started:
            server.stop()
        redis.close()


async def _call(url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else orjson.dumps(body)
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url + path, data=data, headers=HEADERS) as answer,
    ):
        return answer.status, orjson.loads(await answer.read())


async def _list(server: RunningServer, total: int) -> dict[str, Any]:
    """The list asked of ``server`` once it holds ``total`` connections (at most 10 s: a
    node's entry among the nodes alive is renewed every second)."""
    for _ in range(100):
        status, answer = await _call(server.url, "GET", "/api/admin/connections")
        assert status == 200, answer
        if answer["total"] == total and answer["answered"] == answer["nodes"] == 2:
            return dict(answer)
        await asyncio.sleep(0.1)
    raise AssertionError(f"never {total} connections on 2 nodes: {answer}")


async def test_either_node_lists_both_and_acts_on_the_other(
    nodes: tuple[RunningServer, RunningServer],
) -> None:
    a, b = nodes
    clients: dict[str, NativeClient] = {}
    try:
        for name, server in (("a0", a), ("a1", a), ("b0", b), ("b1", b), ("b2", b)):
            client = await NativeClient.open(server.ws_url, key=f"{name}, 1, /adm")
            assert "result" in await client.call("subscribe", channel=ROOM)
            clients[name] = client
        ids = {name: client.connect_result["client"] for name, client in clients.items()}

        from_a = await _list(a, 5)
        from_b = await _list(b, 5)
        name_a, name_b = from_a["node"], from_b["node"]
        assert name_a != name_b
        for answer in (from_a, from_b):
            holders = {row["client"]: row["node"] for row in answer["connections"]}
            assert holders == {
                ids[name]: name_a if name.startswith("a") else name_b for name in ids
            }
            ages = [row["age"] for row in answer["connections"]]
            assert ages == sorted(ages, reverse=True)
        row = next(r for r in from_a["connections"] if r["client"] == ids["b1"])
        assert (row["user"], row["transport"], row["ip"], row["channels"]) == (
            "b1",
            "websocket",
            "127.0.0.1",
            2,  # the room and its key's own channel
        )

        # Through node A: disconnect b1 (held by B), unsubscribe b2 (on B) from the room.
        status, answer = await _call(a.url, "POST", "/api/admin/disconnect", {"client": ids["b1"]})
        assert (status, answer) == (200, {"disconnected": 1})
        await asyncio.wait_for(clients["b1"].closed.wait(), 5)
        assert clients["b1"].ws.close_code == 3503
        body = {"user": "b2", "channel": ROOM}
        status, answer = await _call(a.url, "POST", "/api/admin/unsubscribe", body)
        assert (status, answer) == (200, {"unsubscribed": 1})
        assert (await clients["b2"].next_push())["push"] == "unsubscribed"
        assert await clients["b0"].pushes_now(0.2) == []  # the others untouched

        after = await _list(a, 4)
        assert ids["b1"] not in {row["client"] for row in after["connections"]}
        b2 = next(r for r in after["connections"] if r["client"] == ids["b2"])
        assert (b2["node"], b2["channels"]) == (name_b, 1)
    finally:
        for client in clients.values():
            await client.close()
