"""The HTTP API of a real server: answers, errors, and the API key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient


async def request(
    srv: RunningServer,
    method: str,
    path: str,
    *,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """``method path`` with ``data``, sent as JSON unless ``headers`` say otherwise."""
    if data is not None:
        headers = {"Content-Type": "application/json", **(headers or {})}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, srv.url + path, data=data, headers=headers) as resp,
    ):
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()


async def test_publish_then_history(server: RunningServer) -> None:
    status, first = await request(
        server, "POST", "/api/publish", data=b'{"channel": "api:h", "data": {"x": 1}}'
    )
    assert status == 200
    assert first["offset"] == 1
    await request(server, "POST", "/api/publish", data=b'{"channel": "api:h", "data": 2}')
    status, page = await request(server, "GET", "/api/history?channel=api:h")
    assert status == 200
    assert page["epoch"] == first["epoch"]
    assert page["offset"] == 2
    assert [p["data"] for p in page["publications"]] == [{"x": 1}, 2]
    _, since = await request(
        server, "GET", f"/api/history?channel=api:h&since=1&epoch={first['epoch']}"
    )
    assert since["recoverable"] is True
    assert [p["data"] for p in since["publications"]] == [2]
    _, limited = await request(server, "GET", "/api/history?channel=api:h&limit=1")
    assert [p["offset"] for p in limited["publications"]] == [2]


async def test_channels_lists_subscriber_counts(server: RunningServer) -> None:
    a = await NativeClient.open(server.ws_url)
    b = await NativeClient.open(server.ws_url)
    await a.call("subscribe", channel="api:count")
    await b.call("subscribe", channel="api:count")
    _, body = await request(server, "GET", "/api/channels")
    assert body["channels"]["api:count"] == 2
    await a.close()
    await b.close()


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "problem"),
    [
        ("POST", "/api/publish", b"{not json", 400, "not valid JSON"),
        ("POST", "/api/publish", b"", 400, "empty"),
        ("POST", "/api/publish", b"[1]", 400, "JSON object"),
        ("POST", "/api/publish", b'{"channel": 5, "data": 1}', 400, "'channel'"),
        ("POST", "/api/publish", b'{"channel": "", "data": 1}', 400, "'channel'"),
        ("POST", "/api/publish", b'{"channel": "c"}', 400, "'data' is missing"),
        ("POST", "/api/event", b'{"keys": {}, "data": 1}', 400, "'keys'"),
        ("POST", "/api/event", b'{"keys": ["a, 0"], "data": 1}', 400, "three"),
        ("POST", "/api/event", b'{"keys": [1], "data": 1}', 400, "string"),
        ("POST", "/api/event", b'{"keys": "a, 0, /b"}', 400, "'data' is missing"),
        ("GET", "/api/history", None, 400, "'channel'"),
        ("GET", "/api/history?channel=c&limit=x", None, 400, "'limit' must be an integer"),
        ("GET", "/api/history?channel=c&since=1", None, 400, "'epoch'"),
        ("GET", "/api/publish", None, 405, "Not Allowed"),
        ("GET", "/api/nothing", None, 404, "Not Found"),
    ],
)
async def test_bad_requests_get_json_errors_naming_the_problem(
    server: RunningServer, method: str, path: str, body: bytes | None, status: int, problem: str
) -> None:
    got, payload = await request(server, method, path, data=body)
    assert got == status
    assert payload["error"]["status"] == status
    assert problem in payload["error"]["message"]


async def test_oversize_body_is_refused_and_nothing_published(
    start_server: Callable[..., RunningServer],
) -> None:
    srv = start_server("[limits]\nmax_http_body = 1000\n")
    big = b'{"channel": "api:big", "data": "' + b"x" * 2000 + b'"}'
    status, payload = await request(srv, "POST", "/api/publish", data=big)
    assert status == 413
    assert "limit of 1000 bytes" in payload["error"]["message"]
    _, page = await request(srv, "GET", "/api/history?channel=api:big")
    assert page["offset"] == 0
    status, _ = await request(srv, "POST", "/api/publish", data=b'{"channel":"ok","data":1}')
    assert status == 200


async def test_api_key_is_required_when_configured(
    start_server: Callable[..., RunningServer],
) -> None:
    srv = start_server('[server]\napi_key = "s3cret"\n')
    body = b'{"channel": "api:k", "data": 1}'
    for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "apikey nope"}):
        status, payload = await request(srv, "POST", "/api/publish", data=body, headers=headers)
        assert status == 401
        assert "API key" in payload["error"]["message"]
    status, _ = await request(srv, "GET", "/api/channels")
    assert status == 401
    status, page = await request(
        srv, "GET", "/api/history?channel=api:k", headers={"X-API-Key": "s3cret"}
    )
    assert status == 200
    assert page["offset"] == 0, "a refused publish must not have published"
    for headers in ({"X-API-Key": "s3cret"}, {"Authorization": "apikey s3cret"}):
        status, _ = await request(srv, "POST", "/api/publish", data=body, headers=headers)
        assert status == 200
    assert "running open" not in srv.log
