"""Publication tags: a STOMP SEND's own headers, and ``tags`` of the HTTP API and native
``publish``, reach every subscriber (STOMP MESSAGE headers, native pushes, history)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.support.server import RunningServer
from tests.support.stomp_helpers import RawClient, connect, start_stomp_server
from tests.support.wsclient import NativeClient


@pytest.fixture(scope="module")
def broker() -> Iterator[tuple[RunningServer, int]]:
    srv, port = start_stomp_server('[[channel]]\nmatch = "tags*"\nclient_publish = true\n')
    yield srv, port
    srv.stop()


def unique(name: str) -> str:
    return f"{name}-{time.monotonic_ns()}"


async def publish(srv: RunningServer, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(srv.url + "/api/publish", json=body) as resp,
    ):
        return resp.status, await resp.json()


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_a_sends_own_headers_reach_the_topics_subscribers(
    broker: tuple[RunningServer, int], version: str
) -> None:
    _, port = broker
    topic = "/topic/" + unique("tags")
    sender, _ = connect(port, version)
    receiver, got = connect(port, version)
    receiver.subscribe(topic, id="s", receipt="subscribed")
    assert got.wait(lambda: "subscribed" in got.receipts)
    # stomp.py sends these as headers; a client's orbiter-offset is not passed on.
    sender.send(topic, "hi", headers={"priority": "5", "x-note": "a b", "orbiter-offset": "99"})
    (message,) = got.wait_messages(1)
    assert message.body == "hi"
    assert message.headers["priority"] == "5"
    assert message.headers["x-note"] == "a b"
    assert message.headers["orbiter-offset"] == "1"
    assert message.headers["subscription"] == "s"
    sender.disconnect()
    receiver.disconnect()


async def test_tags_cross_between_stomp_the_http_api_and_native_sessions(
    broker: tuple[RunningServer, int],
) -> None:
    srv, port = broker
    channel = unique("tags")
    native = await NativeClient.open(srv.ws_url)
    assert "result" in await native.call("subscribe", channel=channel)
    stomp_client, got = connect(port)
    stomp_client.subscribe(f"/topic/{channel}", id="s", receipt="subscribed")
    assert got.wait(lambda: "subscribed" in got.receipts)

    status, _ = await publish(srv, {"channel": channel, "data": "one", "tags": {"kind": "api"}})
    assert status == 200
    push = await native.next_push()
    assert (push["data"], push["tags"]) == ("one", {"kind": "api"})
    (message,) = got.wait_messages(1)
    assert message.headers["kind"] == "api"

    stomp_client.send(f"/topic/{channel}", "two", headers={"kind": "stomp"})
    push = await native.next_push()
    assert (push["data"], push["tags"]) == ("two", {"kind": "stomp"})

    reply = await native.call("publish", channel=channel, data="three", tags={"kind": "native"})
    assert "result" in reply
    push = await native.next_push()
    assert (push["data"], push["tags"]) == ("three", {"kind": "native"})
    assert got.wait_messages(3)[2].headers["kind"] == "native"

    status, _ = await publish(srv, {"channel": channel, "data": "untagged"})
    assert "tags" not in await native.next_push()

    # History and recovery keep them.
    async with (
        aiohttp.ClientSession() as http,
        http.get(srv.url + f"/api/history?channel={channel}") as resp,
    ):
        page = await resp.json()
    assert [p.get("tags") for p in page["publications"]] == [
        {"kind": "api"},
        {"kind": "stomp"},
        {"kind": "native"},
        None,
    ]
    await native.close()
    stomp_client.disconnect()


@pytest.mark.parametrize(
    ("tags", "problem"),
    [
        ("kind=api", "'tags' must be an object of strings"),
        ({"n": 1}, "tag 'n' must be a string"),
        ({"a:b": "x"}, "with no ':' or control character"),
        ({"": "x"}, "must be 1 to 128 characters"),
        ({"destination": "/topic/elsewhere"}, "is reserved"),
        ({"orbiter-epoch": "x"}, "is reserved"),
        ({"k": "line\nbreak"}, "with no control character"),
        ({f"k{i}": "v" for i in range(33)}, "more than 32 tags"),
    ],
)
async def test_bad_tags_are_refused_naming_the_problem(
    server: RunningServer, tags: object, problem: str
) -> None:
    status, answer = await publish(server, {"channel": "tags:bad", "data": 1, "tags": tags})
    assert status == 400
    assert problem in answer["error"]["message"]
    batch = {"publications": [{"channel": "tags:bad", "data": 1, "tags": tags}]}
    status, answer = await publish(server, batch)
    assert status == 400
    assert answer["error"]["message"].startswith("publications[0]: ")
    native = await NativeClient.open(server.ws_url)
    reply = await native.call("publish", channel="tags:bad", data=1, tags=tags)
    assert problem in reply["error"]["message"]
    await native.close()


def test_a_send_header_no_subscriber_could_read_is_an_error(
    broker: tuple[RunningServer, int],
) -> None:
    _, port = broker
    raw = RawClient(port)
    raw.connect()
    # STOMP 1.2 escapes a colon in a name as \c; a 1.0 subscriber could not be given it.
    raw.send(b"SEND\ndestination:/topic/x\nodd\\cname:v\n\nx\x00")
    frame = raw.next()
    assert frame.command == "ERROR"
    assert frame.get("message") == "cannot pass these headers on"
    assert "tag name 'odd:name'" in frame.body.decode()
    assert raw.wait_closed()
