"""Orbited 0.3 URLs (``/<location>|<user>,<session>,<transport>``) against a real server."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest

from orbiter import AsyncClient
from tests.support.server import RunningServer
from tests.support.sse_client import EventStream

TIMEOUT = 1.0
CONFIG = f"""
[session]
ping_interval = 1

[poll]
timeout = {TIMEOUT}

[orbited]
disconnect_delay = 2
response_limit = 3000
"""
ATTACK = "</script><script>alert(1)</script>\u2028"


@pytest.fixture(scope="module")
def srv() -> Iterator[RunningServer]:
    server = RunningServer(CONFIG)
    yield server
    server.stop()


def url(base: str, location: str, user: str, transport: str) -> str:
    return f"{base}/{location}|{quote(user)},0,{transport}"


async def xhr(base: str, location: str, user: str) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(url(base, location, user, "xhr")) as response,
    ):
        if response.status == 200:
            assert response.headers["Content-Type"] == "application/javascript; charset=utf-8"
        return response.status, await response.read()


def evaluated(body: bytes) -> Any:
    """What the seed's ``eval(xhr.responseText)`` gives (None for undefined)."""
    if not body:
        return None
    assert body.startswith(b"("), body
    assert body.endswith(b")"), body
    return orjson.loads(body[1:-1])


async def send(base: str, key: str, *events: Any) -> None:
    async with AsyncClient(base) as api:
        for data in events:
            await api.event(key, data)


async def test_xhr_delivers_one_event_per_poll_in_order_none_lost(srv: RunningServer) -> None:
    key = "xena, 0, /chat"
    held = asyncio.create_task(xhr(srv.url, "chat", "xena"))
    await asyncio.sleep(0.3)
    events = [{"n": n, "html": "<b>hi</b>"} for n in range(5)]
    await send(srv.url, key, *events)
    got = [evaluated((await held)[1])]
    for _ in range(4):
        got.append(evaluated((await xhr(srv.url, "chat", "xena"))[1]))
    assert got == events
    # Sent while no poll was held: the next poll still gets it.
    await send(srv.url, key, "between polls")
    assert evaluated((await xhr(srv.url, "chat", "xena"))[1]) == "between polls"
    started = time.monotonic()
    assert await xhr(srv.url, "chat", "xena") == (200, b"")  # the timeout: eval gives undefined
    assert time.monotonic() - started >= TIMEOUT * 0.9


async def test_xhr_position_is_forgotten_after_the_disconnect_delay(srv: RunningServer) -> None:
    key = "yuri, 0, /chat"
    assert await xhr(srv.url, "chat", "yuri") == (200, b"")
    await send(srv.url, key, "soon")
    assert evaluated((await xhr(srv.url, "chat", "yuri"))[1]) == "soon"
    await asyncio.sleep(2.3)  # past orbited.disconnect_delay
    await send(srv.url, key, "to nobody")
    assert await xhr(srv.url, "chat", "yuri") == (200, b"")


async def test_a_newer_xhr_poll_of_the_key_replaces_the_held_one(srv: RunningServer) -> None:
    old = asyncio.create_task(xhr(srv.url, "chat", "zoe"))
    await asyncio.sleep(0.3)
    new = asyncio.create_task(xhr(srv.url, "chat", "zoe"))
    await asyncio.sleep(0.3)
    await send(srv.url, "zoe, 0, /chat", "once")
    bodies = sorted([(await old)[1], (await new)[1]])
    assert [evaluated(b) for b in bodies] == [None, "once"]


async def read_until(response: aiohttp.ClientResponse, marker: bytes, timeout: float = 5) -> bytes:
    data = b""
    async with asyncio.timeout(timeout):
        while marker not in data:
            chunk = await response.content.readany()
            if not chunk:
                break
            data += chunk
    return data


async def test_iframe_streams_script_tags_that_cannot_be_broken_out_of(srv: RunningServer) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(url(srv.url, "chat", "ida", "iframe") + "?callback=app.got") as response,
    ):
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        prelude = await read_until(response, b"-->\n")
        assert b"window.parent.app.got(d);" in prelude
        await send(srv.url, "ida, 0, /chat", ATTACK, {"n": 2})
        body = await read_until(response, b'c({"n":2});</script>')
        calls = re.findall(rb"<script>c\((.*?)\);</script>", body)
        assert [orjson.loads(c) for c in calls] == [ATTACK, {"n": 2}]
        assert b"alert(1)</script>" not in body
        assert "\u2028".encode() not in body
        # The only tags are the stream's own.
        assert body.count(b"<script") == body.count(b"</script>") == 2
        assert b"<!-- keepalive -->" in await read_until(response, b"<!-- keepalive -->")


async def test_iframe_domain_is_served_as_the_iframe(srv: RunningServer) -> None:
    """Issue 18 (seed 003): Orbited 0.3's cross-subdomain iframe, refused before. Browsers no
    longer let a page set document.domain, so it is the same document as ``iframe``."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(url(srv.url, "chat", "dom", "iframe_domain")) as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert b"window.parent.event(d);" in await read_until(response, b"-->\n")
        await send(srv.url, "dom, 0, /chat", {"n": 1})
        assert b'c({"n":1});' in await read_until(response, b'c({"n":1});')


async def test_iframe_reloads_past_its_limit_and_resumes_where_it_stopped(
    srv: RunningServer,
) -> None:
    key = "ivan, 0, /chat"
    async with aiohttp.ClientSession() as http:
        async with http.get(url(srv.url, "chat", "ivan", "iframe")) as first:
            await read_until(first, b"-->\n")
            await send(srv.url, key, "a" * 1000)  # past orbited.response_limit
            body = await read_until(first, b"</html>")
        assert body.endswith(b"<script>r(50);</script>\n</body></html>\n")
        await send(srv.url, key, "sent while reloading")
        async with http.get(url(srv.url, "chat", "ivan", "iframe")) as second:
            body = await read_until(second, b'c("sent while reloading");</script>')
    assert body.count(b"<script>c(") == 1  # that event, and not the one before the reload


async def test_sse_url_sends_each_payload_with_a_resumable_id(srv: RunningServer) -> None:
    key = "sam, 0, /chat"
    stream = await EventStream.open(url(srv.url, "chat", "sam", "sse"))
    assert (await stream.next()).name == "subscribed"
    await send(srv.url, key, {"n": 1})
    first = await stream.next()
    assert (first.name, first.json()) == ("message", {"n": 1})
    await stream.close()
    await send(srv.url, key, {"n": 2}, {"n": 3})
    again = await EventStream.open(url(srv.url, "chat", "sam", "sse"), last_event_id=first.id)
    assert (await again.next()).name == "subscribed"
    assert [(await again.next()).json() for _ in range(2)] == [{"n": 2}, {"n": 3}]
    async with AsyncClient(srv.url) as api:
        assert (await api.channels())["$key:sam, 0, /chat"] == 1
    await again.close()


@pytest.mark.parametrize(
    ("path", "headers", "problem"),
    [
        ("/chat|ann,0,flash", {}, "unknown Orbited transport 'flash'"),
        ("/chat|ann,xhr", {}, "three comma-separated parts"),
        ("/|ann,0,xhr", {}, "'location' is empty"),
        ("/chat|ann,0,iframe?callback=alert(1)", {}, "'callback' must be a JavaScript name"),
        ("/chat|ann,0,sse", {"Last-Event-ID": "nonsense"}, "not 'epoch:offset'"),
    ],
)
async def test_bad_urls_get_a_clear_error(
    srv: RunningServer, path: str, headers: dict[str, str], problem: str
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(srv.url + path, headers=headers) as response,
    ):
        assert response.status == 400
        assert problem in (await response.json())["error"]["message"]


async def stream_opened(http: aiohttp.ClientSession, base: str, user: str, transport: str) -> Any:
    """An Orbited stream of ``user``'s key, open and subscribed."""
    response = await http.get(url(base, "chat", user, transport))
    await read_until(response, b"-->\n" if transport == "iframe" else b"event: subscribed")
    return response


@pytest.mark.parametrize("transport", ["iframe", "sse"])
async def test_the_next_connection_of_a_key_does_not_replay_what_a_resumed_stream_wrote(
    srv: RunningServer, transport: str
) -> None:
    """Issue 18 (seed 003): ``xhr``, ``iframe``, ``xhr`` gave ``[m1]``, ``[m2]``, ``[m2]``.

    The stream resumed from the position the first poll left; the next poll
    came while the stream's connection was still open on the server (a
    reloading page's new request often comes before the old one's close is
    seen, a proxy can hide it until the next heartbeat) and started from that
    old position, not from what the stream had written since.
    """
    user = f"rex-{transport}"
    key = f"{user}, 0, /chat"
    held = asyncio.create_task(xhr(srv.url, "chat", user))
    await asyncio.sleep(0.3)
    await send(srv.url, key, "m1")
    assert evaluated((await held)[1]) == "m1"
    async with aiohttp.ClientSession() as http:
        stream = await stream_opened(http, srv.url, user, transport)
        await send(srv.url, key, "m2")
        await read_until(stream, b'"m2"')
        # The stream is still open: the next poll goes on from what it wrote.
        polled = asyncio.create_task(xhr(srv.url, "chat", user))
        await asyncio.sleep(0.3)
        await send(srv.url, key, "m3")
        assert evaluated((await polled)[1]) == "m3"
        stream.close()
    await asyncio.sleep(0.3)
    await send(srv.url, key, "m4")
    assert evaluated((await xhr(srv.url, "chat", user))[1]) == "m4"


async def test_a_reloaded_iframe_does_not_replay_what_the_one_before_it_wrote(
    srv: RunningServer,
) -> None:
    """Issue 18 (seed 003) in a browser: load ``[a]``, reload ``[b]``, reload ``[b, c]``.

    The second iframe resumes where the first ended; the third's request
    comes while the second is still open on the server.
    """
    key = "rhea, 0, /chat"
    async with aiohttp.ClientSession() as http:
        first = await stream_opened(http, srv.url, "rhea", "iframe")
        await send(srv.url, key, "a")
        await read_until(first, b'c("a")')
        first.close()
        await asyncio.sleep(0.3)
        second = await stream_opened(http, srv.url, "rhea", "iframe")  # resumes after a
        await send(srv.url, key, "b")
        await read_until(second, b'c("b")')
        third = await stream_opened(http, srv.url, "rhea", "iframe")  # before second's close
        await send(srv.url, key, "c")
        body = await read_until(third, b'c("c")')
        second.close()
        third.close()
    calls = re.findall(rb"<script>c\((.*?)\);</script>", body)
    assert [orjson.loads(c) for c in calls] == ["c"]
