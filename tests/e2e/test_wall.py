"""The server-wide wall: ``POST /api/wall``, ``Client.wall`` and ``orbiter wall TEXT`` reach
every subscriber of ``orbiter:wall``; the API key guards it and browsers cannot write on it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import aiohttp
import pytest

from orbiter.client import AsyncClient, Client, OrbiterError
from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient

WALL = "orbiter:wall"


@pytest.fixture(scope="module")
def keyed() -> Iterator[RunningServer]:
    srv = RunningServer('[server]\napi_key = "wall-key"\n')
    yield srv
    srv.stop()


async def test_wall_reaches_subscribers_and_needs_the_key(keyed: RunningServer) -> None:
    reader = await NativeClient.open(keyed.ws_url)
    try:
        await reader.call("subscribe", channel=WALL)
        answer = Client(keyed.url, api_key="wall-key").wall("<b>maintenance</b> at 5")
        assert answer["channel"] == WALL
        push = await reader.next_push()
        assert push["channel"] == WALL
        assert push["data"] == {"text": "<b>maintenance</b> at 5"}

        with pytest.raises(OrbiterError) as refused:
            Client(keyed.url, api_key="wrong").wall("not from us")
        assert refused.value.status == 401
        async with AsyncClient(keyed.url, api_key="wall-key") as client:
            await client.wall("second")
        assert (await reader.next_push())["data"] == {"text": "second"}
        assert await reader.pushes_now() == []  # the refused one never came
    finally:
        await reader.close()


async def test_wall_text_is_checked(keyed: RunningServer) -> None:
    headers = {"X-API-Key": "wall-key", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:
        for body, problem in (
            (b'{"text": ""}', "non-empty"),
            (b'{"text": 5}', "non-empty"),
            (b"{}", "non-empty"),
            (b'{"text": "' + b"x" * 2001 + b'"}', "longer than 2000"),
            (b"[1]", "JSON object"),
        ):
            async with http.post(keyed.url + "/api/wall", data=body, headers=headers) as resp:
                assert resp.status == 400, body
                assert problem in (await resp.json())["error"]["message"]


async def test_browsers_cannot_write_on_the_wall(server: RunningServer) -> None:
    browser = await NativeClient.open(server.ws_url)
    try:
        reply = await browser.call("publish", channel=WALL, data={"text": "fake notice"})
        assert reply["error"]["code"] == 103
    finally:
        await browser.close()


def test_orbiter_wall_command(keyed: RunningServer) -> None:
    env = {**os.environ, "ORBITER_API_KEY": "wall-key"}
    done = subprocess.run(
        [sys.executable, "-m", "orbiter", "wall", "--url", keyed.url, "back in 5 minutes"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert '"channel": "orbiter:wall"' in done.stdout
    page = Client(keyed.url, api_key="wall-key").history(WALL, limit=1)
    assert [p["data"] for p in page["publications"]] == [{"text": "back in 5 minutes"}]

    refused = subprocess.run(
        [sys.executable, "-m", "orbiter", "wall", "--url", keyed.url, "--api-key", "no", "x"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode == 1
    assert "401" in refused.stderr
