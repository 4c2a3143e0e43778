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


async def _cluster_sample(server: RunningServer, want: int) -> tuple[str, dict[str, Any]]:
    """This node's name and the first sample of its feed whose cluster section says that
    both nodes answered and holds ``want`` connections in all (at most ~10 s)."""
    async with aiohttp.ClientSession() as http, http.ws_connect(server.url + "/admin/feed") as ws:
        await ws.send_str(orjson.dumps({"key": KEY}).decode())
        name = orjson.loads((await ws.receive(timeout=5)).data)["hello"]["node"]
        sample: dict[str, Any] = {}
        for _ in range(40):  # one sample a second per node; other nodes' go past too
            sample = orjson.loads((await ws.receive(timeout=5)).data)
            if sample["node"] != name:
                continue
            cluster = sample["cluster"]
            total = sum(sum(s["connections"].values()) for s in cluster["by_node"])
            if cluster["answered"] == cluster["nodes"] == 2 and total == want:
                return name, sample
        raise AssertionError(f"never 2 of 2 nodes with {want} connections: {sample}")


async def test_the_feed_carries_every_node_sample(
    nodes: tuple[RunningServer, RunningServer],
) -> None:
    """Node A's dashboard feed: A's own sample at the top (as on one node), and in
    ``cluster`` both nodes' samples, each with the connections and publications it holds."""
    a, b = nodes
    clients = []
    try:
        for server, count in ((a, 1), (b, 3)):
            for i in range(count):
                clients.append(await NativeClient.open(server.ws_url, key=f"u{i}, 1, /adm"))
        status, _ = await _call(b.url, "POST", "/api/publish", {"channel": ROOM, "data": 1})
        assert status == 200
        name_a, sample = await _cluster_sample(a, 4)
        assert sample["connections"] == {"websocket": 1}  # A's own, as on one node
        by_node = {s["node"]: s for s in sample["cluster"]["by_node"]}
        assert sample["cluster"]["by_node"][0]["node"] == name_a  # this node's first
        name_b = next(name for name in by_node if name != name_a)
        assert by_node[name_b]["connections"] == {"websocket": 3}
        assert by_node[name_b]["published"] >= 1
        assert set(by_node[name_b]) >= {"delivered", "counters", "engine", "time"}
    finally:
        for client in clients:
            await client.close()
