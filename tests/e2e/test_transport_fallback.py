"""Transport-fallback reports at a real server's native WebSocket: a report is one DEBUG
line (JSON or text) and a count on ``/metrics``; hostile reports (unknown names, floods of
entries, huge or multi-line reasons) neither cost the connection nor make a metric series,
and their lines stay short."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.redis_server import RedisServer
from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient

REPORT = {"to": "eventsource", "failed": [{"transport": "websocket", "reason": "closed 1006"}]}
HOSTILE: list[Any] = [
    {"to": "evil\nevent=open", "failed": [{"transport": "websocket"}]},
    {"to": "eventsource", "failed": [{"transport": f"series-{i}"} for i in range(5000)]},
    {"to": "eventsource", "failed": [{"transport": "websocket", "reason": "x" * 200_000}]},
    {"to": "eventsource", "failed": [{"transport": "websocket", "reason": "a\nlevel=ERROR"}]},
    ["websocket"] * 1000,
    "websocket",
]


@pytest.fixture(scope="module")
def debug_json() -> Iterator[RunningServer]:
    srv = RunningServer('[log]\nlevel = "debug"\nformat = "json"\n', args=("--engine", "memory"))
    yield srv
    srv.stop()


def _events(server: RunningServer, event: str) -> list[dict[str, Any]]:
    lines = (orjson.loads(line) for line in list(server.lines) if line.startswith("{"))
    return [line for line in lines if line.get("event") == event]


def _wait_for(server: RunningServer, event: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while len(found := _events(server, event)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def _wait_for_text(server: RunningServer, text: str) -> None:
    deadline = time.monotonic() + 10
    while text not in server.log and time.monotonic() < deadline:
        time.sleep(0.05)


async def _fallback_series(server: RunningServer) -> dict[tuple[str, str], float]:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/metrics") as answer:
        text = await answer.text()
    return {
        (s.labels["from_transport"], s.labels["to_transport"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "orbiter_transport_fallbacks"
        for s in family.samples
        if s.name.endswith("_total")
    }


async def test_hostile_reports_are_ignored_and_a_good_one_is_counted(
    debug_json: RunningServer,
) -> None:
    clients = []
    try:
        for report in HOSTILE:
            client = await NativeClient.open(debug_json.ws_url, fallback=report)
            assert "result" in await client.call("ping")  # the connection goes on
            clients.append(client)
        ignored = _wait_for(debug_json, "fallback_ignored", len(HOSTILE))
        assert len(ignored) == len(HOSTILE)
        assert {line["client"] for line in ignored} == {c.connect_result["client"] for c in clients}
        for line in ignored:
            assert line["level"] == "DEBUG"
            assert len(orjson.dumps(line)) < 600, line
            assert "\n" not in line["problem"]
        assert _events(debug_json, "fallback") == []
        assert await _fallback_series(debug_json) == {}

        good = await NativeClient.open(debug_json.ws_url, fallback=REPORT)
        clients.append(good)
        [line] = _wait_for(debug_json, "fallback", 1)
        assert line["client"] == good.connect_result["client"]
        assert line["ip"] == "127.0.0.1"
        assert line["chain"] == "websocket>eventsource"
        assert line["reasons"] == "websocket: closed 1006"
        assert await _fallback_series(debug_json) == {("websocket", "eventsource"): 1.0}
    finally:
        for client in clients:
            await client.close()


async def test_the_text_format_writes_one_line_per_report() -> None:
    srv = RunningServer('[log]\nlevel = "debug"\nformat = "text"\n', args=("--engine", "memory"))
    try:
        report = {
            "to": "xhr-polling",
            "failed": [
                {"transport": "websocket", "reason": "closed 1006"},
                {"transport": "xhr-streaming", "reason": "closed 1006: HTTP 502"},
            ],
        }
        client = await NativeClient.open(srv.ws_url, fallback=report)
        hostile = await NativeClient.open(
            srv.ws_url, fallback={"to": "eventsource", "failed": [{"transport": "w\nx"}]}
        )
        ident = client.connect_result["client"]
        _wait_for_text(srv, "event=fallback_ignored")
        [line] = [line for line in srv.lines if "event=fallback " in line]
        assert " DEBUG orbiter.events: event=fallback " in line
        assert f"client={ident} ip=127.0.0.1 transport=xhr-polling" in line
        assert "chain=websocket>xhr-streaming>xhr-polling" in line
        assert 'reasons="websocket: closed 1006; xhr-streaming: closed 1006: HTTP 502"' in line
        [ignored] = [line for line in srv.lines if "event=fallback_ignored" in line]
        assert f"client={hostile.connect_result['client']}" in ignored
        assert "failed transport must be one of" in ignored
        assert not [line for line in srv.lines if line.startswith("x'")]  # no line broken
        await client.close()
        await hostile.close()
    finally:
        srv.stop()


async def test_one_scrape_shows_every_node_s_fallbacks() -> None:
    """Two nodes on a real redis-server: a fallback reported at node B is on node A's
    /metrics, under B's node label."""
    redis = RedisServer()
    nodes: list[RunningServer] = []
    try:
        for _ in range(2):
            nodes.append(RunningServer(args=("--engine", redis.url)))
        a, b = nodes
        client = await NativeClient.open(b.ws_url, fallback=REPORT)
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(100):  # until A's scrape has B's answer (node list: 1 s)
                    async with http.get(a.url + "/metrics") as answer:
                        text = await answer.text()
                    series = [
                        s
                        for family in text_string_to_metric_families(text)
                        if family.name == "orbiter_transport_fallbacks"
                        for s in family.samples
                        if s.name.endswith("_total")
                    ]
                    if series:
                        break
                    await asyncio.sleep(0.1)
            [sample] = series
            assert sample.labels["from_transport"] == "websocket"
            assert sample.labels["to_transport"] == "eventsource"
            assert sample.value == 1.0
            assert sample.labels["node"].endswith(f":{b.process.pid}")
        finally:
            await client.close()
    finally:
        for server in nodes:
            server.stop()
        redis.close()
