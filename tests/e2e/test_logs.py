"""The server's log lines, read back and parsed: ``[log] format = "json"`` makes every
line a JSON object; ``debug`` adds a line per subscribe, unsubscribe and publish (its data
only with ``[log] payloads``); off levels cost a flag test and nothing is formatted."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest

from orbiter import AsyncClient
from orbiter.config.settings import Config, LogSettings
from orbiter.engine.memory import MemoryBroker, MemoryPresenceStore
from orbiter.logs import (
    EVENTS_LOGGER,
    NODE_LOGGER,
    TEXT_FORMAT,
    WARNING_INTERVAL,
    Counters,
    EventLog,
)
from orbiter.services.pubsub import PubSub
from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient


def _json_lines(server: RunningServer) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in server.lines if line.strip()]


def _events(server: RunningServer, event: str) -> list[dict[str, Any]]:
    return [line for line in _json_lines(server) if line.get("event") == event]


def _wait_for(server: RunningServer, event: str, count: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while len(found := _events(server, event)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


@pytest.fixture
def debug_json() -> Iterator[RunningServer]:
    server = RunningServer('[log]\nformat = "json"\nlevel = "debug"\n', args=("--engine", "memory"))
    yield server
    server.stop()


async def test_json_lines_with_subscribes_and_publishes_at_debug(
    debug_json: RunningServer,
) -> None:
    client = await NativeClient.open(debug_json.ws_url)
    try:
        await client.call("subscribe", channel="news")
        async with AsyncClient(debug_json.url) as api:
            await api.publish("news", {"secret": "payload"}, tags={"kind": "note"})
        await client.next_push()
        await client.call("unsubscribe", channel="news")
    finally:
        await client.close()
    client_id = client.connect_result["client"]
    [subscribe] = _wait_for(debug_json, "subscribe")
    assert (subscribe["client"], subscribe["channel"], subscribe["level"]) == (
        client_id,
        "news",
        "DEBUG",
    )
    assert subscribe["logger"] == EVENTS_LOGGER
    [publish] = _wait_for(debug_json, "publish")
    assert (publish["channel"], publish["tags"]) == ("news", {"kind": "note"})
    assert "data" not in publish  # no payloads unless asked
    assert "payload" not in "".join(debug_json.lines)
    [unsubscribe] = _wait_for(debug_json, "unsubscribe")
    assert unsubscribe["channel"] == "news"
    lines = _json_lines(debug_json)  # every line parses: aiohttp's and orbiter's alike
    assert any("listening on" in line["message"] for line in lines)
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", ln["time"]) for ln in lines)


async def test_payloads_when_asked() -> None:
    server = RunningServer(
        '[log]\nformat = "json"\npayloads = true\n',
        args=("--engine", "memory", "--log-level", "debug"),
    )
    try:
        async with AsyncClient(server.url) as api:
            await api.publish("news", {"n": 1})
        [publish] = _wait_for(server, "publish")
    finally:
        server.stop()
    assert orjson.loads(publish["data"]) == {"n": 1}


async def test_no_debug_lines_at_info() -> None:
    server = RunningServer('[log]\nformat = "json"\n', args=("--engine", "memory"))
    try:
        client = await NativeClient.open(server.ws_url)
        await client.call("subscribe", channel="news")
        async with AsyncClient(server.url) as api:
            await api.publish("news", 1)
        await client.next_push()
        await client.close()
    finally:
        server.stop()
    assert _events(server, "subscribe") == []
    assert _events(server, "publish") == []
    assert not any(line["level"] == "DEBUG" for line in _json_lines(server))


def test_text_lines_are_key_value_pairs() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logger = logging.getLogger("tests.logs.text")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        EventLog(payloads=True, logger=logger).published("chat:a b", {"t": "x y"}, None)
    finally:
        logger.removeHandler(handler)
    line = out.getvalue().strip()
    assert re.match(r"\S+ \S+ DEBUG tests\.logs\.text: event=publish ", line), line
    pairs = dict(re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line.split(": ", 1)[1]))
    assert pairs["channel"] == '"chat:a b"'
    assert orjson.loads(orjson.loads(pairs["data"])) == {"t": "x y"}


async def test_an_off_level_formats_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """At INFO, publishing and subscribing never reach the event log's writer."""
    logging.getLogger(EVENTS_LOGGER).setLevel(logging.INFO)
    calls: list[str] = []
    monkeypatch.setattr(EventLog, "_emit", lambda self, level, event, fields: calls.append(event))
    try:
        config = Config(log=LogSettings(payloads=True))
        pubsub = PubSub(config, MemoryBroker(), MemoryPresenceStore())
        assert not pubsub.events.debug
        for i in range(100):
            assert pubsub.publish_at_once("news", i) is not None
            await pubsub.publish("news", i)
        assert calls == []
        logging.getLogger(EVENTS_LOGGER).setLevel(logging.DEBUG)
        pubsub = PubSub(config, MemoryBroker(), MemoryPresenceStore())
        pubsub.publish_at_once("news", 1)
        assert calls == ["publish"]  # the same calls, the level on: written
    finally:
        logging.getLogger(EVENTS_LOGGER).setLevel(logging.NOTSET)


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ('format = "xml"', "log.format"),
        ('level = "trace"', "log.level"),
        ("payload = true", "unknown key 'log.payload'"),
    ],
)
def test_bad_log_settings_stop_start_up(table: str, problem: str) -> None:
    import tomllib

    from orbiter.config.settings import ConfigError, config_from_dict

    with pytest.raises(ConfigError, match=re.escape(problem)):
        config_from_dict(tomllib.loads(f"[log]\n{table}\n"))


async def test_a_line_per_connection_open_and_close_and_per_refusal() -> None:
    server = RunningServer(
        '[log]\nformat = "json"\n[limits]\nmax_connections_per_ip = 2\n',
        args=("--engine", "memory"),
    )
    try:
        ann = await NativeClient.open(server.ws_url, user="ann", location="/chat")
        bob = await NativeClient.open(server.ws_url, user="bob", location="/chat")
        async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url) as third:
            await third.receive()  # a third from 127.0.0.1: refused
            assert third.close_code == 3003
        await asyncio.sleep(0.3)
        await ann.close()  # the client goes away
        [opened_ann, opened_bob] = _wait_for(server, "open", 2)[:2]
        [closed_ann] = _wait_for(server, "close")
        code = await asyncio.to_thread(server.stop)  # bob: closed by the server, 1001
        await bob.close()
    finally:
        server.stop()
    assert code == 0
    assert opened_ann == opened_ann | {
        "level": "INFO",
        "logger": EVENTS_LOGGER,
        "transport": "websocket",
        "ip": "127.0.0.1",
        "client": ann.connect_result["client"],
    }
    assert opened_bob["client"] == bob.connect_result["client"]
    assert closed_ann["client"] == ann.connect_result["client"]
    assert (closed_ann["user"], closed_ann["code"], closed_ann["reason"]) == (
        "ann",
        None,
        "client went away",
    )
    assert 0.3 <= closed_ann["duration"] < 10
    closes = {line["client"]: line for line in _events(server, "close")}
    closed_bob = closes[bob.connect_result["client"]]
    assert (closed_bob["user"], closed_bob["code"], closed_bob["reason"]) == (
        "bob",
        1001,
        "server shutting down",
    )
    [refused] = _events(server, "refused")
    assert (refused["level"], refused["counter"]) == ("WARNING", "limit_connections_per_ip")
    assert "127.0.0.1" in refused["message"]


async def test_stomp_connections_have_their_lines_too() -> None:
    server = RunningServer('[log]\nformat = "json"\n', args=("--engine", "memory"))
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(server.url + "/stomp", protocols=("v12.stomp",)) as ws,
        ):
            await ws.send_str("CONNECT\naccept-version:1.2\nhost:x\n\n\x00")
            assert (await ws.receive()).data.startswith("CONNECTED")
        [opened] = _wait_for(server, "open")
        [closed] = _wait_for(server, "close")
    finally:
        server.stop()
    assert (opened["transport"], opened["ip"]) == ("stomp-websocket", "127.0.0.1")
    assert opened["client"].startswith("stomp-")
    assert closed["client"] == opened["client"]
    assert (closed["code"], closed["reason"]) == (None, "connection closed")  # no codes in STOMP
    assert closed["duration"] >= 0


async def test_a_slow_consumer_is_a_limit_line_and_a_close_line_with_3001() -> None:
    server = RunningServer(
        '[log]\nformat = "json"\n[limits]\noutgoing_buffer = 4096\n', args=("--engine", "memory")
    )
    try:
        client = await NativeClient.open(server.ws_url)
        await client.call("subscribe", channel="big")
        async with AsyncClient(server.url) as api:
            await api.publish("big", "x" * 8000)  # more than outgoing_buffer at once
        await asyncio.wait_for(client.closed.wait(), 5)
        [limit] = _wait_for(server, "limit")
        [closed] = _wait_for(server, "close")
        await client.close()
    finally:
        server.stop()
    assert client.ws.close_code == 3001
    assert (limit["level"], limit["counter"], limit["ip"]) == (
        "WARNING",
        "limit_outgoing_buffer",
        "127.0.0.1",
    )
    assert limit["client"] == closed["client"] == client.connect_result["client"]
    assert (closed["code"], closed["reason"]) == (3001, "outgoing buffer full")


async def test_a_refused_publish_is_one_limit_line_per_interval() -> None:
    """Limits that refuse a command without closing (here limits.publish_rate) are counted
    and written as event=limit lines with the client and its address, one per interval."""
    server = RunningServer(
        '[log]\nformat = "json"\n[limits]\npublish_rate = 1\npublish_burst = 1\n',
        args=("--engine", "memory"),
    )
    try:
        client = await NativeClient.open(server.ws_url)
        replies = [await client.call("publish", channel="chat:a", data=i) for i in range(6)]
        assert "result" in replies[0], replies
        assert all(reply["error"]["code"] == 106 for reply in replies[1:]), replies
        assert not client.closed.is_set()
        [limit] = _wait_for(server, "limit")
        async with AsyncClient(server.url) as api:
            counters = (await api.stats())["counters"]
        await client.close()
    finally:
        server.stop()
    assert counters["limit_publish_rate"] == 5
    assert len(_events(server, "limit")) == 1  # the other four only counted
    assert (limit["level"], limit["logger"], limit["counter"], limit["ip"]) == (
        "WARNING",
        "orbiter.node",
        "limit_publish_rate",
        "127.0.0.1",
    )
    assert limit["client"] == client.connect_result["client"]


def test_limit_lines_are_one_per_counter_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [50.0]
    counters = Counters(clock=lambda: now[0])
    caplog.set_level(logging.WARNING, NODE_LOGGER)
    for _ in range(30):
        counters.limit("limit_subscriptions", "c1", "10.0.0.1")
    counters.limit("limit_publish_rate", "c2", "10.0.0.2")
    assert [(r.counter, r.client, r.ip) for r in caplog.records] == [  # type: ignore[attr-defined]
        ("limit_subscriptions", "c1", "10.0.0.1"),
        ("limit_publish_rate", "c2", "10.0.0.2"),
    ]
    now[0] += WARNING_INTERVAL - 0.1
    counters.limit("limit_subscriptions", "c3", "10.0.0.3")
    assert len(caplog.records) == 2
    now[0] += 0.1
    counters.limit("limit_subscriptions", "c4", "10.0.0.4")
    assert caplog.records[-1].getMessage() == (
        "client c4 (10.0.0.4): a command refused: limit_subscriptions "
        "(and 30 more like it since the last such line)"
    )
    assert caplog.records[-1].event == "limit"  # type: ignore[attr-defined]
    assert (counters["limit_subscriptions"], counters["limit_publish_rate"]) == (32, 1)


def _frame_rate_server() -> RunningServer:
    return RunningServer(
        '[log]\nformat = "json"\n[limits]\nframe_rate = 5\n', args=("--engine", "memory")
    )


async def _limit_frame_rate(server: RunningServer) -> int:
    async with AsyncClient(server.url) as api:
        return int((await api.stats())["counters"]["limit_frame_rate"])


async def test_frames_past_frame_rate_are_a_limit_line_on_the_native_websocket() -> None:
    """limits.frame_rate holds a client's frames back without closing it: counted, and
    one event=limit line per interval with the client and its address."""
    server = _frame_rate_server()
    try:
        client = await NativeClient.open(server.ws_url)
        # 30 frames at once, 5 a second allowed: read over six seconds, none refused.
        for id_ in range(100, 130):
            await client.ws.send_bytes(orjson.dumps({"id": id_, "op": "ping"}))
        assert "result" in await client.reply(129, timeout=10)
        assert not client.closed.is_set()
        counted = await _limit_frame_rate(server)
        await client.close()
    finally:
        server.stop()
    assert counted >= 5  # a throttle each second
    [limit] = _events(server, "limit")  # the other hits only counted
    assert (limit["level"], limit["logger"], limit["counter"], limit["ip"]) == (
        "WARNING",
        NODE_LOGGER,
        "limit_frame_rate",
        "127.0.0.1",
    )
    assert limit["client"] == client.connect_result["client"]


async def test_frames_past_frame_rate_are_a_limit_line_on_aiohttps_websocket_routes() -> None:
    """The same on the routes aiohttp serves (limits.frame_rate through RatedFrames): here
    /stomp, whose connection has a client id from the start."""
    server = _frame_rate_server()
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(server.url + "/stomp", protocols=("v12.stomp",), autoping=False) as ws,
        ):
            await ws.send_str("CONNECT\naccept-version:1.2\nhost:x\n\n\x00")
            assert (await ws.receive(timeout=5)).data.startswith("CONNECTED")
            for i in range(12):  # 5 a second allowed: the pongs come over two more seconds
                await ws.ping(b"%d" % i)
            pongs = 0
            while pongs < 12:
                msg = await ws.receive(timeout=5)
                pongs += msg.type is aiohttp.WSMsgType.PONG
            [limit] = _wait_for(server, "limit")
            [opened] = _wait_for(server, "open")
            counted = await _limit_frame_rate(server)
    finally:
        server.stop()
    assert counted >= 2
    assert len(_events(server, "limit")) == 1
    assert (limit["level"], limit["counter"], limit["ip"]) == (
        "WARNING",
        "limit_frame_rate",
        "127.0.0.1",
    )
    assert limit["client"] == opened["client"]
    assert opened["client"].startswith("stomp-")
