"""``POST /api/call`` (and the Python clients' ``call``): the app server calls browser widgets.

A real ``orbiter serve`` with the chat element mounted; the browsers are
native-protocol clients that attach and answer the server's call pushes as a
widget would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import orjson
import pytest

from orbiter import AsyncClient, Client, OrbiterError
from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient

CONFIG = """
[server]
api_key = "k"

[[live.element]]
path = "/chat"
factory = "examples.athena_chat.chat:chat"
"""


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    server = RunningServer(CONFIG)
    yield server
    server.stop()


class Browser:
    """A connection with the chat element attached, answering calls (or not, when mute)."""

    def __init__(self, client: NativeClient, name: str) -> None:
        self.client, self.name = client, name
        self.mute = False
        self.heard: list[dict[str, Any]] = []
        self._task = asyncio.ensure_future(self._answer())

    async def _answer(self) -> None:
        while True:
            push = await self.client.pushes.get()
            if push.get("push") != "call":
                continue
            self.heard.append(push)
            if not self.mute:
                value = f"{self.name}: {push['method']}{push['args']}"
                await self.client.ws.send_json(
                    {"op": "return", "call": push["call"], "value": value}
                )

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.client.ws.close()
        await self.client._session.close()


@pytest.fixture
async def browsers(server: RunningServer) -> AsyncIterator[list[Browser]]:
    opened = []
    for name in ("ann", "bob"):
        client = await NativeClient.open(server.ws_url, user=name, location="/chat")
        assert "result" in await client.call("subscribe", channel="chat:lobby")
        assert "result" in await client.call("attach", mount="/chat")
        opened.append(Browser(client, name))
    yield opened
    for browser in opened:
        await browser.close()


async def test_fire_and_forget_to_a_user(server: RunningServer, browsers: list[Browser]) -> None:
    ann, bob = browsers
    async with AsyncClient(server.url, api_key="k") as app:
        answer = await app.call("displayMessage", "psst", user="ann")
    assert answer == {"calls": 1}
    for _ in range(100):
        if ann.heard:
            break
        await asyncio.sleep(0.01)
    assert [(p["method"], p["args"]) for p in ann.heard] == [("displayMessage", ["psst"])]
    assert bob.heard == []


async def test_gathering_results_from_a_channel_and_a_key(
    server: RunningServer, browsers: list[Browser]
) -> None:
    assert len(browsers) == 2
    async with AsyncClient(server.url, api_key="k") as app:
        answer = await app.call("displayMessage", "all", channel="chat:lobby", wait=True)
        values = sorted(r["value"] for r in answer["results"])
        assert values == ["ann: displayMessage['all']", "bob: displayMessage['all']"]
        assert {r["mount"] for r in answer["results"]} == {"/chat"}
        by_key = await app.call("displayMessage", "you", key="bob, 0, /chat", wait=True)
        [result] = by_key["results"]
        assert result["value"] == "bob: displayMessage['you']"
        assert (await app.call("displayMessage", "x", user="ann", mount="/other")) == {"calls": 0}
        wall = await app.call("displayMessage", "to all", mount="/chat", wait=True)
        assert len(wall["results"]) == 2
        assert (await app.call("displayMessage", "x", user="nobody", wait=True)) == {"results": []}


async def test_a_widget_that_does_not_answer_times_out_alone(
    server: RunningServer, browsers: list[Browser]
) -> None:
    ann, bob = browsers
    bob.mute = True
    async with AsyncClient(server.url, api_key="k") as app:
        answer = await app.call(
            "displayMessage", "hello?", channel="chat:lobby", wait=True, timeout=0.3
        )
    outcomes = {r["client"]: r for r in answer["results"]}
    assert outcomes[ann.client.connect_result["client"]]["value"] == "ann: displayMessage['hello?']"
    error = outcomes[bob.client.connect_result["client"]]["error"]
    assert error["type"] == "RemoteTimeout"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"method": "m", "args": []}, "name exactly one of 'user', 'key', 'channel' (or only"),
        ({"method": "m", "user": "a", "channel": "c"}, "name exactly one of"),
        ({"method": "", "user": "a"}, "'method' must be a string of 1 to 128 characters"),
        ({"method": "m", "user": "a", "args": {}}, "'args' must be an array"),
        ({"method": "m", "user": "a", "timeout": 0}, "'timeout' must be a number of seconds"),
        ({"method": "m", "user": "a", "timeout": 61}, "'timeout' must be a number of seconds"),
        ({"method": "m", "user": "a", "wait": "yes"}, "'wait' must be true or false"),
        ({"method": "m", "key": "no key"}, "key"),
    ],
)
async def test_bad_bodies_are_400_naming_the_problem(
    server: RunningServer, body: dict[str, Any], message: str
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(server.url + "/api/call", json=body, headers={"X-API-Key": "k"}) as response,
    ):
        assert response.status == 400
        assert message in (await response.json())["error"]["message"]


def test_the_api_key_is_needed(server: RunningServer) -> None:
    with pytest.raises(OrbiterError) as info:
        Client(server.url, api_key="wrong").call("displayMessage", "x", user="ann")
    assert info.value.status == 401
    assert Client(server.url, api_key="k").call("displayMessage", "x", user="nobody") == {
        "calls": 0
    }


def test_the_command_line_calls_too(server: RunningServer) -> None:
    import subprocess
    import sys

    base = [sys.executable, "-m", "orbiter", "call", "--url", server.url, "--api-key", "k"]
    done = subprocess.run(
        [*base, "displayMessage", "hi", "--user", "nobody"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout) == {"calls": 0}
    done = subprocess.run([*base, "displayMessage", "hi"], capture_output=True, text=True)
    assert done.returncode == 1
    assert "name exactly one of user=, key=, channel=" in done.stderr
