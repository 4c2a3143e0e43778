"""The Python clients and the ``orbiter`` command against a real server."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import pytest

from orbiter import AsyncClient, Client, OrbiterError
from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient


def test_sync_client_covers_the_api(server: RunningServer) -> None:
    orbit = Client(server.url)
    first = orbit.publish("py:sync", {"a": 1})
    orbit.publish("py:sync", "two")
    page = orbit.history("py:sync")
    assert page["epoch"] == first["epoch"]
    assert [p["data"] for p in page["publications"]] == [{"a": 1}, "two"]
    since = orbit.history("py:sync", since=(first["offset"], first["epoch"]))
    assert [p["data"] for p in since["publications"]] == ["two"]
    # the seed's pyorbited call, with a single key and with a list
    assert orbit.event("alice, 0, /py", "<b>hi</b>")[0]["key"] == "alice, 0, /py"
    assert len(orbit.event(["a, 0, /py", "b, 0, /py"], "x")) == 2
    assert isinstance(orbit.channels(), dict)
    with pytest.raises(OrbiterError) as info:
        orbit.publish("", 1)
    assert info.value.status == 400
    assert "'channel'" in info.value.message


def test_sync_client_reports_an_unreachable_server() -> None:
    with pytest.raises(OrbiterError, match="cannot reach"):
        Client("http://127.0.0.1:9", timeout=2).publish("c", 1)


async def test_async_client_delivers_to_subscribers(server: RunningServer) -> None:
    ws = await NativeClient.open(server.ws_url)
    await ws.call("subscribe", channel="py:async")
    async with AsyncClient(server.url) as orbit:
        await orbit.publish("py:async", [1, 2])
        assert (await ws.next_push())["data"] == [1, 2]
        assert (await orbit.channels())["py:async"] == 1
        page = await orbit.history("py:async", limit=1)
        assert page["publications"][0]["data"] == [1, 2]
        with pytest.raises(OrbiterError) as info:
            await orbit.event(["bad key"], 1)
        assert info.value.status == 400
    await ws.close()


def test_clients_send_the_api_key(
    start_server: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = start_server('[server]\napi_key = "k1"\n')
    with pytest.raises(OrbiterError) as info:
        Client(srv.url).publish("c", 1)
    assert info.value.status == 401
    assert Client(srv.url, api_key="k1").publish("c", 1)["offset"] == 1
    monkeypatch.setenv("ORBITER_API_KEY", "k1")
    assert Client(srv.url).publish("c", 2)["offset"] == 2


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orbiter", *args], capture_output=True, text=True, timeout=30
    )


def test_cli_publish_event_history_channels(server: RunningServer) -> None:
    done = _cli("publish", "--url", server.url, "cli:x", '{"n": 5}')
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["offset"] == 1
    assert _cli("publish", "--url", server.url, "cli:x", "plain text").returncode == 0
    history = json.loads(_cli("history", "--url", server.url, "cli:x").stdout)
    assert [p["data"] for p in history["publications"]] == [{"n": 5}, "plain text"]
    event = _cli("event", "--url", server.url, "hi", "dave, 0, /cli")
    assert json.loads(event.stdout)[0]["key"] == "dave, 0, /cli"
    assert _cli("channels", "--url", server.url).returncode == 0
    bad = _cli("publish", "--url", server.url, "", "x")
    assert bad.returncode == 1
    assert "'channel'" in bad.stderr


async def test_presence_over_http_and_clients(server: RunningServer) -> None:
    a = await NativeClient.open(server.ws_url, user="erin", location="/p", info={"n": 1})
    b = await NativeClient.open(server.ws_url, user="erin", location="/p", session="1")
    for ws in (a, b):
        await ws.call("subscribe", channel="chat:presence")
    async with AsyncClient(server.url) as orbit:
        got = await orbit.presence("chat:presence")
    assert got["clients"] == 2
    assert [u["user"] for u in got["users"]] == ["erin"]
    assert Client(server.url).presence("chat:presence")["users"][0]["clients"] == 2
    await a.close()
    await b.close()


def test_cli_takes_the_api_key_from_the_flag_or_the_environment(
    start_server: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = start_server('[server]\napi_key = "k2"\n')
    monkeypatch.delenv("ORBITER_API_KEY", raising=False)
    wrong = _cli("stats", "--url", srv.url, "--api-key", "nope")
    assert wrong.returncode == 1
    assert "401" in wrong.stderr
    assert "API key" in wrong.stderr
    assert _cli("publish", "--url", srv.url, "c", "1").returncode == 1
    done = _cli("stats", "--url", srv.url, "--api-key", "k2")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["counters"]["api_key_refused"] == 2
    monkeypatch.setenv("ORBITER_API_KEY", "k2")
    assert _cli("publish", "--url", srv.url, "c", "1").returncode == 0
