"""Live elements on a real ``orbiter serve``: pages, attach, calls both ways, leaving, bad start."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator

import aiohttp
import pytest

from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient

CHAT = "examples.athena_chat.chat:chat"


@pytest.fixture(scope="module")
def chat_server() -> Iterator[RunningServer]:
    # An element outlives its connection by grace_period, for a reconnect: short here.
    server = RunningServer("[live]\ngrace_period = 0.5\n", args=("--element", CHAT))
    yield server
    server.stop()


MOUNTS = """
[live]
max_elements = 2

[[live.element]]
path = "/sample"
factory = "tests.live.sample:make"
title = "<Sample & co>"

[[live.element]]
path = "/chat/room"
factory = "examples.athena_chat.chat:chat"
"""


async def _get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, response.headers["Content-Type"], await response.text()


async def test_the_element_page_holds_template_widget_and_start(chat_server: RunningServer) -> None:
    status, kind, page = await _get(chat_server.url + "/")
    assert (status, kind) == (200, "text/html; charset=utf-8")
    assert '<form name="chooseBox">' in page
    assert '<script src="/static/orbiter.js"></script>' in page
    assert "ChatThing.ChatterWidget = class ChatterWidget extends Orbiter.Widget" in page
    assert "Orbiter.Widget.start(ChatThing.ChatterWidget" in page
    assert '{"mount":"/"}' in page
    assert "live element ChatterElement at /" in chat_server.log


async def test_mounts_from_the_config_and_the_demo_stays_at_root() -> None:
    server = RunningServer(MOUNTS)
    try:
        status, _, page = await _get(server.url + "/sample")
        assert status == 200
        assert "<title>&lt;Sample &amp; co&gt;</title>" in page
        assert "Orbiter.Widget.start(SampleWidget" in page
        status, _, page = await _get(server.url + "/chat/room")
        assert (status, '{"mount":"/chat/room"}' in page) == (200, True)
        status, _, page = await _get(server.url + "/")
        assert "Orbiter.Widget.start" not in page  # the chat demo

        client = await NativeClient.open(server.ws_url, user="ann", location="/here")
        try:
            attached = await client.call("attach", mount="/sample")
            assert attached["result"]["element"] == 1
            assert attached["result"]["widget"] == "SampleWidget"
            who = await client.call("call", element=1, method="whoami")
            assert who["result"]["value"]["user"] == "ann"
            # A call the element makes to the widget while answering the browser's:
            asked = asyncio.ensure_future(client.call("call", element=1, method="ask", args=["q"]))
            push = await client.next_push()
            assert (push["push"], push["method"], push["args"]) == ("call", "answer", ["q"])
            await client.ws.send_json({"op": "return", "call": push["call"], "value": "q!"})
            assert (await asked)["result"] == {"value": "q!"}
            # The limit from the config:
            assert "result" in await client.call("attach", mount="/chat/room")
            refused = await client.call("attach", mount="/chat/room")
            assert refused["error"]["code"] == 106
        finally:
            await client.ws.close()
            await client._session.close()
    finally:
        server.stop()


async def test_chatters_hear_each_other_and_the_room_notices_one_leaving(
    chat_server: RunningServer,
) -> None:
    ann = await NativeClient.open(chat_server.ws_url)
    bob = await NativeClient.open(chat_server.ws_url)
    try:
        for client, name in ((ann, "ann"), (bob, "bob")):
            assert (await client.call("attach", mount="/"))["result"]["element"] == 1
            reply = await client.call("call", element=1, method="setUsername", args=[name])
            assert reply["result"] == {"value": None}

        async def heard(client: NativeClient, text: str) -> None:
            async with asyncio.timeout(5):
                while True:
                    push = await client.next_push()
                    assert push["push"] == "call"
                    # Answer like a widget (displayMessage returns nothing).
                    await client.ws.send_json({"op": "return", "call": push["call"]})
                    if text in push["args"]:
                        return

        await heard(ann, " * user bob has joined the room")
        await bob.call("call", element=1, method="say", args=["hi ann"])
        await heard(ann, "hi ann")
        bad = await bob.call("call", element=1, method="setUsername", args=[5])
        assert bad["error"] == {
            "code": 113,
            "type": "ValueError",
            "message": "a username is 1 to 32 characters",
        }
        again = await bob.call("call", element=1, method="setUsername", args=["bobby"])
        assert again["error"]["message"] == "already logged in as bob"
        await bob.ws.close()
        await heard(ann, " * user bob has left the room")
    finally:
        for client in (ann, bob):
            await client.ws.close()
            await client._session.close()


def test_an_element_that_cannot_load_stops_start_up_in_one_line() -> None:
    for args, code, message in [
        (["--element", "no_such_module_here:chat"], 1, "cannot import 'no_such_module_here'"),
        (["--element", "examples.athena_chat.chat:nothing"], 1, "'nothing' not found"),
        (["--element", "not a factory"], 2, "must be 'package.module:attribute'"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "orbiter", "serve", "--port", "0", "--engine", "memory", *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == code, done.stderr
        assert message in done.stderr
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


async def test_with_auth_the_element_sees_the_token_s_user_not_a_claim() -> None:
    from tests.support.keys import SECRET, token

    server = RunningServer(
        f'[auth]\nsecret = "{SECRET}"\n\n[[live.element]]\npath = "/s"\n'
        'factory = "tests.live.sample:make"\n'
    )
    try:
        claim = {"user": "mallory"}  # info is what the browser says: not who it is
        client = await NativeClient.open(server.ws_url, token=token("dora"), info=claim)
        try:
            assert "result" in await client.call("attach", mount="/s")
            who = await client.call("call", element=1, method="whoami")
            assert who["result"]["value"]["user"] == "dora"
        finally:
            await client.ws.close()
            await client._session.close()
    finally:
        server.stop()
