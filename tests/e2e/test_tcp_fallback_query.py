"""A real server's ``/tcp`` WebSocket with ``?fallback=`` (what orbiter.js's TCPSocket sends
when an earlier transport failed): a good report is logged and counted once, a malformed
or oversized one is ignored with a ``fallback_ignored`` line and no new metric series, and
the relay to a real echo backend works either way."""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.server import RunningServer
from tests.support.tcp_servers import ThreadedEcho

GOOD = {"to": "websocket", "failed": [{"transport": "xhr-streaming", "reason": "closed 1006"}]}


@pytest.fixture
def setup() -> Iterator[tuple[RunningServer, ThreadedEcho]]:
    echo = ThreadedEcho()
    access = f'[[tcp.access]]\nto = "127.0.0.1:{echo.port}"\n'
    server = RunningServer('[log]\nlevel = "debug"\nformat = "json"\n' + access)
    try:
        yield server, echo
    finally:
        server.stop()
        echo.stop()


async def _echo_through(server: RunningServer, port: int, fallback: str | None) -> None:
    query = {"host": "127.0.0.1", "port": str(port), "session": "page1"}
    if fallback is not None:
        query["fallback"] = fallback
    url = f"{server.ws_url.split('/connection')[0]}/tcp?{urllib.parse.urlencode(query)}"
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, protocols=("orbiter.tcp",)) as ws,
    ):
        opened = orjson.loads((await ws.receive(timeout=5)).data)
        assert opened["type"] == "open"
        await ws.send_bytes(b"ping")
        assert (await ws.receive(timeout=5)).data == b"ping"


def _events(server: RunningServer, event: str) -> list[dict[str, Any]]:
    lines = (orjson.loads(line) for line in list(server.lines) if line.startswith("{"))
    return [line for line in lines if line.get("event") == event]


async def _fallbacks(server: RunningServer) -> dict[tuple[str, str], float]:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/metrics") as answer:
        text = await answer.text()
    counts = {}
    for family in text_string_to_metric_families(text):
        if family.name == "orbiter_transport_fallbacks":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    labels = sample.labels
                    counts[labels["from_transport"], labels["to_transport"]] = sample.value
    return counts


async def test_reports_in_the_query_are_counted_once_or_ignored(
    setup: tuple[RunningServer, ThreadedEcho],
) -> None:
    server, echo = setup
    await _echo_through(server, echo.port, None)
    await _echo_through(server, echo.port, orjson.dumps(GOOD).decode())
    bad = [
        "{not json",
        orjson.dumps({**GOOD, "to": "smoke-signals"}).decode(),
        orjson.dumps(GOOD).decode() + " " * 2000,
    ]
    for report in bad:
        await _echo_through(server, echo.port, report)
    for _ in range(50):
        if len(_events(server, "fallback_ignored")) == len(bad):
            break
        await asyncio.sleep(0.05)
    [line] = _events(server, "fallback")
    assert (line["client"], line["chain"]) == ("tcp:page1", "xhr-streaming>websocket")
    ignored = _events(server, "fallback_ignored")
    assert len(ignored) == len(bad)
    assert all(len(line["problem"]) < 200 for line in ignored)
    assert await _fallbacks(server) == {("xhr-streaming", "websocket"): 1.0}
