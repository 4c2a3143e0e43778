"""``POST /api/publish`` with a batch of publications, on a real server."""

from __future__ import annotations

import orjson

from tests.e2e.test_http_api import request
from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient


async def test_a_batch_is_published_in_order_and_delivered(server: RunningServer) -> None:
    client = await NativeClient.open(server.ws_url)
    await client.call("subscribe", channel="batch:a")
    body = {
        "publications": [
            {"channel": "batch:a", "data": 1},
            {"channel": "batch:b", "data": 2},
            {"channel": "batch:a", "data": 3},
        ]
    }
    status, answer = await request(server, "POST", "/api/publish", data=orjson.dumps(body))
    assert status == 200
    results = answer["results"]
    assert [(r["channel"], r["offset"]) for r in results] == [
        ("batch:a", 1),
        ("batch:b", 1),
        ("batch:a", 2),
    ]
    pushes = [await client.next_push(timeout=10) for _ in range(2)]
    assert [(p["offset"], p["data"]) for p in pushes] == [(1, 1), (2, 3)]
    await client.close()


async def test_a_bad_item_refuses_the_whole_batch(server: RunningServer) -> None:
    body = {"publications": [{"channel": "batch:c", "data": 1}, {"channel": "", "data": 2}]}
    status, answer = await request(server, "POST", "/api/publish", data=orjson.dumps(body))
    assert status == 400
    assert "publications[1]" in answer["error"]["message"]
    status, page = await request(server, "GET", "/api/history?channel=batch:c")
    assert page["offset"] == 0
    for bad, says in (
        ([], "non-empty list"),
        ("x", "non-empty list"),
        ([{"channel": "batch:c"}], "publications[0]"),
        ([{"channel": "batch:c", "data": 1}] * 10_001, "more than 10000"),
    ):
        status, answer = await request(
            server, "POST", "/api/publish", data=orjson.dumps({"publications": bad})
        )
        assert status == 400
        assert says in answer["error"]["message"]
