"""``GET /metrics`` of a real server, parsed with prometheus_client's own parser after known
traffic: connections by transport, publications, deliveries, the sampled latency histogram,
limit and refusal counters; the API key guards it unless ``[metrics] public = true``, and
``[metrics] enabled = false`` removes it."""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orbiter.client import AsyncClient
from tests.support.server import RunningServer
from tests.support.sse_client import EventStream
from tests.support.wsclient import NativeClient

KEY = "metrics-key"
CHANNEL = "m:room"
#: Native WebSocket and SSE subscribers, and publications.
SOCKETS, STREAMS, PUBLICATIONS = 3, 2, 40

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    srv = RunningServer(f'[server]\napi_key = "{KEY}"\n')
    yield srv
    srv.stop()


async def _scrape(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics", headers=headers) as got:
        return got.status, await got.text()


def _samples(text: str) -> Samples:
    """Every sample by (name, labels without ``node``); one node here."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "node"))
            samples[(sample.name, labels)] = sample.value
    return samples


async def test_numbers_after_known_traffic(server: RunningServer) -> None:
    sockets = [await NativeClient.open(server.ws_url) for _ in range(SOCKETS)]
    url = f"{server.url}/connection/sse?channel={quote(CHANNEL, safe='')}"
    streams = [await EventStream.open(url) for _ in range(STREAMS)]
    stomp_http = aiohttp.ClientSession()
    stomp = await stomp_http.ws_connect(server.url + "/stomp", protocols=("v12.stomp",))
    try:
        await stomp.send_str("CONNECT\naccept-version:1.2\nhost:orbiter\n\n\x00")
        assert (await stomp.receive(timeout=5)).data.startswith("CONNECTED")
        for client in sockets:
            await client.call("subscribe", channel=CHANNEL)
        for stream in streams:  # subscribed once its first event (the connect) came
            await stream.next()
        async with AsyncClient(server.url, api_key=KEY) as app_server:
            for i in range(PUBLICATIONS):
                await app_server.publish(CHANNEL, {"n": i})
        for client in sockets:
            got = [await client.next_push() for _ in range(PUBLICATIONS)]
            assert [push["data"]["n"] for push in got] == list(range(PUBLICATIONS))
        for stream in streams:
            assert len(await stream.messages(PUBLICATIONS)) == PUBLICATIONS

        status, text = await _scrape(server.url, {"X-API-Key": KEY})
        assert status == 200, text
        samples = _samples(text)
        node_labels = {
            s.labels.get("node") for f in text_string_to_metric_families(text) for s in f.samples
        }
        assert len(node_labels - {None}) == 1  # one node, named in every per-node series
        assert samples[("orbiter_connections", (("transport", "websocket"),))] == SOCKETS
        assert samples[("orbiter_connections", (("transport", "sse"),))] == STREAMS
        assert samples[("orbiter_connections", (("transport", "stomp-websocket"),))] == 1
        assert samples[("orbiter_publications_total", ())] == PUBLICATIONS
        assert samples[("orbiter_deliveries_total", ())] == PUBLICATIONS * (SOCKETS + STREAMS)
        assert samples[("orbiter_subscribed_channels", ())] == 1
        assert samples[("orbiter_history_bytes", ())] > 0
        assert samples[("orbiter_cluster_nodes", ())] == 1
        # One hand-over in 16 is timed: 40 publications one after another are 40 hand-overs.
        count = samples[("orbiter_publish_latency_seconds_count", ())]
        assert 1 <= count <= PUBLICATIONS // 16  # sampled, never one clock read each
        assert samples[("orbiter_publish_latency_seconds_bucket", (("le", "+Inf"),))] == count
        assert 0 < samples[("orbiter_publish_latency_seconds_sum", ())] < count * 5
    finally:
        for client in sockets:
            await client.close()
        for stream in streams:
            await stream.close()
        await stomp.close()
        await stomp_http.close()

    # Closed connections leave the gauges (the server sees them go within a moment).
    deadline = time.monotonic() + 5
    while True:
        samples = _samples((await _scrape(server.url, {"Authorization": f"apikey {KEY}"}))[1])
        open_now = {k: v for k, v in samples.items() if k[0] == "orbiter_connections" and v}
        if not open_now or time.monotonic() > deadline:
            assert open_now == {}
            break
        await asyncio.sleep(0.05)


async def test_the_api_key_guards_it_and_refusals_are_counted(server: RunningServer) -> None:
    before = _samples((await _scrape(server.url, {"X-API-Key": KEY}))[1])
    refused = ("orbiter_refusals_total", (("reason", "api_key_refused"),))
    too_large = ("orbiter_limit_hits_total", (("limit", "http_body"),))
    status, text = await _scrape(server.url)
    assert status == 401
    assert "API key" in text
    status, text = await _scrape(server.url, {"X-API-Key": "wrong"})
    assert status == 401
    assert "orbiter_" not in text
    async with aiohttp.ClientSession() as http:
        body = b'{"channel": "m:x", "data": "' + b"x" * 1_100_000 + b'"}'
        headers = {"X-API-Key": KEY, "Content-Type": "application/json"}
        async with http.post(server.url + "/api/publish", data=body, headers=headers) as got:
            assert got.status == 413
    after = _samples((await _scrape(server.url, {"X-API-Key": KEY}))[1])
    assert after[refused] == before.get(refused, 0) + 2
    assert after[too_large] == before.get(too_large, 0) + 1


async def test_public_needs_no_key_and_disabled_is_gone() -> None:
    public = RunningServer(f'[server]\napi_key = "{KEY}"\n[metrics]\npublic = true\n')
    try:
        status, text = await _scrape(public.url)
        assert status == 200
        assert "orbiter_publications_total" in text
    finally:
        public.stop()
    off = RunningServer("[metrics]\nenabled = false\n")
    try:
        assert (await _scrape(off.url))[0] == 404
    finally:
        off.stop()


async def test_one_scrape_of_workers_sees_every_worker() -> None:
    """--workers 2 on one port: whichever worker answers serves both workers' series (asked
    through the engine), each under its own node label, and their connections add up."""
    srv = RunningServer(f'[server]\napi_key = "{KEY}"\n', args=("--workers", "2"))
    clients: list[NativeClient] = []
    try:
        for _ in range(400):  # both workers listening (20 s at most)
            if srv.log.count("listening on") >= 2:
                break
            await asyncio.sleep(0.05)
        assert srv.log.count("listening on") >= 2, srv.log
        for _ in range(12):
            client = await NativeClient.open(srv.ws_url)
            await client.call("subscribe", channel=CHANNEL)
            clients.append(client)
        async with AsyncClient(srv.url, api_key=KEY) as app_server:
            for i in range(5):
                await app_server.publish(CHANNEL, {"n": i})
        for client in clients:
            assert len([await client.next_push() for _ in range(5)]) == 5
        for _ in range(3):  # each scrape may reach either worker: the same totals
            status, text = await _scrape(srv.url, {"X-API-Key": KEY})
            assert status == 200, text
            by_node: dict[str, dict[str, float]] = {}
            nodes = answered = 0.0
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == "orbiter_cluster_nodes":
                        nodes = sample.value
                    elif sample.name == "orbiter_cluster_nodes_answered":
                        answered = sample.value
                    elif "node" in sample.labels:
                        values = by_node.setdefault(sample.labels["node"], {})
                        key = sample.name + sample.labels.get("transport", "")
                        values[key] = values.get(key, 0) + sample.value
            assert (nodes, answered) == (2, 2)
            assert len(by_node) == 2
            assert sum(v.get("orbiter_connectionswebsocket", 0) for v in by_node.values()) == 12
            assert all(v.get("orbiter_connectionswebsocket", 0) > 0 for v in by_node.values())
            assert sum(v["orbiter_publications_total"] for v in by_node.values()) == 5
            assert sum(v["orbiter_deliveries_total"] for v in by_node.values()) == 5 * 12
    finally:
        for client in clients:
            await client.close()
        srv.stop()


def _small_files() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (192 * 1024, resource.RLIM_INFINITY))


async def test_a_full_disk_counts_as_engine_failures(tmp_path: Path) -> None:
    srv = RunningServer(args=("--data-dir", str(tmp_path)), preexec=_small_files)
    try:
        failures = ("orbiter_engine_failures_total", ())
        assert _samples((await _scrape(srv.url))[1])[failures] == 0
        refused = 0
        async with aiohttp.ClientSession() as http:
            for n in range(200):  # 1.6 MB: far past the limit
                body = {"channel": "full", "data": [n, "x" * 8000]}
                async with http.post(srv.url + "/api/publish", json=body) as answer:
                    if answer.status == 503:
                        refused += 1
                        break
        assert refused == 1, "the disk never filled"
        assert _samples((await _scrape(srv.url))[1])[failures] >= 1
    finally:
        srv.stop()
