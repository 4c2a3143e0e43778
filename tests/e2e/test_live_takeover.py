"""A page back before the server saw its old connection go keeps its element (real server).

Over SockJS polling the server notices that a page left only after
``sockjs.disconnect_delay``; a page that reconnects sooner attaches with its
``resume`` token while the old session still holds the element, and takes it
over: the same element (the chat room hears no "has left", no second "has
joined"), and the old session's end, when it comes, does nothing to it. The
token's rules hold as for a parked element: same user, same mount, once.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from orbiter import AsyncClient
from tests.support.rawhttp import fetch
from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient

DISCONNECT_DELAY = 2.0
GRACE = 1.0
CONFIG = f"""
[server]
api_key = "k"

[sockjs]
disconnect_delay = {DISCONNECT_DELAY:g}

[live]
grace_period = {GRACE:g}

[[live.element]]
path = "/chat"
factory = "examples.athena_chat.chat:chat"

[[live.element]]
path = "/sample"
factory = "tests.live.sample:make"
"""


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    server = RunningServer(CONFIG)
    yield server
    server.stop()


class Polling:
    """A native-protocol page over SockJS xhr-polling that can stop polling (the cut)."""

    def __init__(self, base: str) -> None:
        self.url = f"{base}/sockjs/000/{uuid.uuid4()}"
        self.ids = 0
        self.inbox: list[dict[str, Any]] = []

    async def open(self, **connect: Any) -> None:
        assert (await fetch(self.url + "/xhr", "POST"))[1] == b"o\n"
        assert "result" in await self.call("connect", **connect)

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        self.ids += 1
        id_ = self.ids
        command = json.dumps({"id": id_, "op": op, **fields})
        head, _ = await fetch(self.url + "/xhr_send", "POST", body=json.dumps([command]).encode())
        assert head.status == 204
        for _ in range(20):
            for message in self.inbox:
                if message.get("id") == id_:
                    return message
            _, body = await fetch(self.url + "/xhr", "POST")
            frame = body.decode().rstrip("\n")
            if frame.startswith("a"):
                self.inbox += [json.loads(m) for m in json.loads(frame[1:])]
        raise AssertionError(f"no reply to {op} in {self.inbox}")


class Listener:
    """A chat page on a WebSocket that answers the server's calls and keeps what it heard."""

    def __init__(self, client: NativeClient) -> None:
        self.client = client
        self.heard: list[list[Any]] = []
        self._news = asyncio.Event()
        self._task = asyncio.ensure_future(self._answer())

    async def _answer(self) -> None:
        while True:
            push = await self.client.pushes.get()
            if push.get("push") == "call":
                self.heard.append(push["args"])
                self._news.set()
                await self.client.ws.send_json({"op": "return", "call": push["call"]})

    async def until(self, args: list[Any], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while args not in self.heard:
                self._news.clear()
                await self._news.wait()

    async def close(self) -> None:
        self._task.cancel()
        await self.client.close()


async def test_a_page_back_over_polling_before_its_session_ended_keeps_its_element(
    server: RunningServer,
) -> None:
    bob = Listener(await NativeClient.open(server.ws_url, user="bob", location="/c"))
    old = Polling(server.url)
    await old.open(user="ann", location="/c")
    new: Listener | None = None
    try:
        assert "result" in await bob.client.call("attach", mount="/chat")
        await bob.client.call("call", element=1, method="setUsername", args=["bob"])
        attached = (await old.call("attach", mount="/chat"))["result"]
        said = await old.call("call", element=1, method="setUsername", args=["ann"])
        assert said["result"] == {"value": None}
        joined = [" * user ann has joined the room"]
        await bob.until(joined)
        # The page stops polling (its network went) and is back at once on a WebSocket:
        # its old session is still open on the server (for sockjs.disconnect_delay).
        stats = await _stats(server)
        new = Listener(await NativeClient.open(server.ws_url, user="ann", location="/c"))
        again = (await new.client.call("attach", mount="/chat", resume=attached["resume"]))[
            "result"
        ]
        assert again["resumed"] is True
        assert again["resume"] != attached["resume"]
        assert (await _stats(server))["connections"] == stats["connections"] + 1  # both open
        said = await new.client.call("call", element=again["element"], method="say", args=["hi"])
        assert said["result"] == {"value": None}  # still logged in: the same element
        await bob.until(["ann", "hi"])
        # The old session ends (disconnect_delay) and the grace period passes: the
        # room is told nothing, the element still answers on the new connection.
        started = time.monotonic()
        await asyncio.sleep(DISCONNECT_DELAY + GRACE + 1.0)
        assert (await _stats(server))["connections"] == stats["connections"]
        assert time.monotonic() - started >= DISCONNECT_DELAY + GRACE
        assert [" * user ann has left the room"] not in bob.heard
        assert bob.heard.count(joined) == 1
        said = await new.client.call("call", element=again["element"], method="say", args=["on"])
        await bob.until(["ann", "on"])
        # The new connection's end is the element's: parked, then detached once.
        await new.close()
        new = None
        await bob.until([" * user ann has left the room"], timeout=GRACE + 5)
        assert bob.heard.count([" * user ann has left the room"]) == 1
    finally:
        for listener in (bob, new):
            if listener is not None:
                await listener.close()


async def test_only_the_same_user_at_the_same_mount_takes_it_and_only_once(
    server: RunningServer,
) -> None:
    opened: list[NativeClient] = []

    async def page(user: str) -> NativeClient:
        opened.append(await NativeClient.open(server.ws_url, user=user, location="/s"))
        return opened[-1]

    try:
        old = await page("ann")
        token = (await old.call("attach", mount="/sample"))["result"]["resume"]
        for user, mount in (("eve", "/sample"), ("ann", "/chat")):
            other = await (await page(user)).call("attach", mount=mount, resume=token)
            assert other["result"]["resumed"] is False, (user, mount)
        who = await old.call("call", element=1, method="whoami")
        assert who["result"]["value"] == {"user": "ann", "client": old.connect_result["client"]}

        new = await page("ann")
        taken = (await new.call("attach", mount="/sample", resume=token))["result"]
        assert taken["resumed"] is True
        lost = await old.call("call", element=1, method="whoami")
        assert lost["error"]["code"] == 112
        spent = await (await page("ann")).call("attach", mount="/sample", resume=token)
        assert spent["result"]["resumed"] is False
        who = await new.call("call", element=taken["element"], method="whoami")
        assert who["result"]["value"]["client"] == new.connect_result["client"]
    finally:
        for client in opened:
            await client.close()


async def test_a_call_waiting_on_the_old_page_fails_with_connection_lost(
    server: RunningServer,
) -> None:
    old = await NativeClient.open(server.ws_url, user="cy", location="/s")
    new = await NativeClient.open(server.ws_url, user="cy", location="/s")
    try:
        token = (await old.call("attach", mount="/sample"))["result"]["resume"]
        async with AsyncClient(server.url, api_key="k") as app:
            waiting = asyncio.ensure_future(
                app.call("answer", "q", user="cy", mount="/sample", wait=True, timeout=20)
            )
            push = await old.next_push()  # the old page never answers it
            assert (push["method"], push["args"]) == ("answer", ["q"])
            started = time.monotonic()
            taken = await new.call("attach", mount="/sample", resume=token)
            assert taken["result"]["resumed"] is True
            answer = await asyncio.wait_for(waiting, 5)
        assert time.monotonic() - started < 5  # failed at the takeover, not at the time-out
        [result] = answer["results"]
        assert result["client"] == old.connect_result["client"]
        assert result["error"] == {
            "type": "ConnectionLost",
            "message": "the page attached the element on a new connection before the answer",
        }
    finally:
        await old.close()
        await new.close()


async def _stats(server: RunningServer) -> dict[str, Any]:
    async with AsyncClient(server.url, api_key="k") as app:
        stats: dict[str, Any] = await app.stats()
    return stats
