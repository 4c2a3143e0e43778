"""The fast path's own checks, in one process: the API key it answers, the heads it hands over.

A near-miss API key must be refused by the fast path itself (401, nothing
published), not only by aiohttp; a ``Host`` or ``Content-Type`` the routes
refuse must reach aiohttp (which answers 400 / 415), never be published.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from orbiter.config.settings import Config
from orbiter.http.fast_publish import FastPublishProtocol, _DateHeader
from orbiter.node import Node
from tests.support.standins import StandInTakeover, StandInTransport

KEY = "s3cret-Key"


class _Inner:
    def eof_received(self) -> bool:
        return False


class RecordingTakeover(StandInTakeover):
    """Records what the fast path gives to aiohttp."""

    def __init__(self, transport: StandInTransport) -> None:
        super().__init__(transport)
        self.handed: list[bytes] = []

    def to_aiohttp(self, protocol: object, data: bytes) -> _Inner:
        self.handed.append(data)
        return _Inner()


def request(*headers: bytes, host: bytes = b"127.0.0.1") -> bytes:
    body = orjson.dumps({"channel": "checks", "data": 1})
    lines = [b"POST /api/publish HTTP/1.1", b"Host: " + host, *headers]
    lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def serve(node: Node, data: bytes) -> tuple[StandInTransport, RecordingTakeover]:
    transport = StandInTransport()
    takeover = RecordingTakeover(transport)
    protocol = FastPublishProtocol(takeover, node, _DateHeader())  # type: ignore[arg-type]
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(data)
    protocol.connection_lost(None)
    return transport, takeover


def answers(out: bytes) -> list[tuple[int, dict[str, Any]]]:
    parts = out.split(b"HTTP/1.1 ")[1:]
    return [(int(p[:3]), orjson.loads(p.split(b"\r\n\r\n", 1)[1])) for p in parts]


async def published(node: Node) -> int:
    page = await node.pubsub.history("checks", None, None)
    return page.position.offset


@pytest.mark.parametrize(
    "header",
    [
        b"X-API-Key:",
        b"X-API-Key: s3cret",
        b"X-API-Key: s3cret-Key1",
        b"X-API-Key: S3CRET-KEY",
        b"X-API-Key: s3cret-key",
        b"Authorization: apikey s3cret",
        b"Authorization: apikey ",
    ],
)
async def test_the_fast_path_itself_refuses_near_miss_keys(header: bytes) -> None:
    node = Node(Config(api_key=KEY))
    good = request(b"X-API-Key: " + KEY.encode())
    transport, takeover = serve(node, good + request(header) + good)
    assert takeover.handed == []
    statuses = [status for status, _ in answers(bytes(transport.out))]
    assert statuses == [200, 401, 200]
    assert answers(bytes(transport.out))[1][1]["error"]["message"] == (
        "missing or wrong API key (send it in the X-API-Key header)"
    )
    assert await published(node) == 2


async def test_a_foreign_host_or_type_goes_to_aiohttp_unpublished() -> None:
    node = Node(Config())
    json = b"Content-Type: application/json"
    for refused in (request(json, host=b"rebound.example"), request(b"Content-Type: text/plain")):
        transport, takeover = serve(node, request(json) + refused)
        assert [status for status, _ in answers(bytes(transport.out))] == [200]
        assert takeover.handed == [refused]
    assert await published(node) == 2
