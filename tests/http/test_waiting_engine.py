"""Publishing through an engine that cannot publish at once (as one talking to a server).

The memory engine publishes at once, so the server tests never take this
road: here a memory engine that refuses ``publish_at_once`` for channels
named ``slow*`` (and waits one loop iteration in ``publish``) stands in for
a networked engine.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from orbiter.config.settings import Config
from orbiter.engine.base import HistoryPolicy
from orbiter.http.api_rules import answer_of, publish_body
from orbiter.http.fast_publish import FastPublishProtocol, _DateHeader
from orbiter.model import JSON, Publication
from orbiter.node import Node
from tests.support.standins import StandInTakeover, StandInTransport
from tests.support.wrapped_broker import WrappedBroker


class WaitingBroker(WrappedBroker):
    def __init__(self) -> None:
        super().__init__()
        self.waited: list[str] = []

    def publish_at_once(
        self, channel: str, data: JSON, policy: HistoryPolicy, tags: dict[str, str] | None = None
    ) -> Publication | None:
        if channel.startswith("slow"):
            return None
        return super().publish_at_once(channel, data, policy, tags)

    async def publish(
        self, channel: str, data: JSON, policy: HistoryPolicy, tags: dict[str, str] | None = None
    ) -> Publication:
        await asyncio.sleep(0)
        self.waited.append(channel)
        published = self.inner.publish_at_once(channel, data, policy, tags)
        assert published is not None  # the memory engine publishes at once
        return published


async def answer(node: Node, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The answer to ``body``, and whether it had to be awaited."""
    result = publish_body(node.pubsub, orjson.dumps(body))
    if isinstance(result, dict):
        return result, False
    return answer_of(await result), True


async def test_a_single_publish_is_awaited_when_the_engine_must_wait() -> None:
    broker = WaitingBroker()
    node = Node(Config(), broker=broker)
    assert await answer(node, {"channel": "fast", "data": 1}) == (
        {
            "offset": 1,
            "epoch": (
                await broker.history("fast", None, node.pubsub.policy("fast"))
            ).position.epoch,
        },
        False,
    )
    result, awaited = await answer(node, {"channel": "slow", "data": 1})
    assert awaited
    assert result["offset"] == 1
    assert broker.waited == ["slow"]


async def test_a_batch_goes_on_in_order_from_the_first_that_must_wait() -> None:
    broker = WaitingBroker()
    node = Node(Config(), broker=broker)
    items = [{"channel": c, "data": i} for i, c in enumerate(["a", "a", "slow", "a", "b"])]
    result, awaited = await answer(node, {"publications": items})
    assert awaited
    assert [(r["channel"], r["offset"]) for r in result["results"]] == [
        ("a", 1),
        ("a", 2),
        ("slow", 1),
        ("a", 3),
        ("b", 1),
    ]
    assert broker.waited == ["slow", "a", "b"]  # after one waited, the rest are awaited too


def request(channel: str, data: int) -> bytes:
    body = orjson.dumps({"channel": channel, "data": data})
    return (
        b"POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )


def bodies(out: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(part.split(b"\r\n\r\n", 1)[1]) for part in out.split(b"HTTP/1.1 ")[1:]]


async def test_the_fast_path_answers_in_order_around_a_publish_that_waits() -> None:
    """While a publish waits, reading pauses and later requests wait their turn."""
    node = Node(Config(), broker=WaitingBroker())
    transport = StandInTransport()
    protocol = FastPublishProtocol(StandInTakeover(transport), node, _DateHeader())  # type: ignore[arg-type]
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(request("a", 1) + request("slow", 2) + request("a", 3))
    assert [b["offset"] for b in bodies(bytes(transport.out))] == [1]
    assert not transport.reading
    protocol.data_received(request("a", 4))  # read before the pause took effect: kept
    for _ in range(5):
        await asyncio.sleep(0)
    assert [b["offset"] for b in bodies(bytes(transport.out))] == [1, 1, 2, 3]
    assert transport.reading
    protocol.connection_lost(None)
