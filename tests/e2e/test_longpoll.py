"""Plain long polling (``GET /poll``, JSON and JSONP) against a real ``orbiter serve``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import orjson
import pytest

from orbiter import AsyncClient
from tests.support.server import RunningServer

TIMEOUT = 1.0
CONFIG = f"""
[poll]
timeout = {TIMEOUT}

[[channel]]
match = "trim:*"
history_size = 2
"""


@pytest.fixture(scope="module")
def srv() -> Iterator[RunningServer]:
    """A server whose polls are held for 1 s; channels ``trim:*`` keep 2 publications."""
    server = RunningServer(CONFIG)
    yield server
    server.stop()


async def poll(base: str, **query: Any) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{base}/poll", params={k: str(v) for k, v in query.items()}) as response,
    ):
        return response.status, dict(response.headers), await response.read()


async def poll_json(base: str, **query: Any) -> dict[str, Any]:
    status, headers, body = await poll(base, **query)
    assert status == 200, body
    assert headers["Content-Type"] == "application/json"
    assert "no-store" in headers["Cache-Control"]
    result: dict[str, Any] = orjson.loads(body)
    return result


async def test_everything_after_since_comes_at_once_in_one_batch(srv: RunningServer) -> None:
    async with AsyncClient(srv.url) as api:
        first = await api.publish("lp:batch", 1)
        await api.publish("lp:batch", 2)
        last = await api.publish("lp:batch", 3)
    started = time.monotonic()
    page = await poll_json(srv.url, channel="lp:batch", since=first["offset"] - 1)
    assert time.monotonic() - started < TIMEOUT / 2
    assert [p["data"] for p in page["publications"]] == [1, 2, 3]
    assert (page["channel"], page["epoch"], page["offset"]) == ("lp:batch", last["epoch"], 3)
    assert page["recoverable"] is True


async def test_without_since_the_current_position_comes_at_once(srv: RunningServer) -> None:
    async with AsyncClient(srv.url) as api:
        pub = await api.publish("lp:start", "x")
    page = await poll_json(srv.url, channel="lp:start")
    assert (page["offset"], page["epoch"], page["publications"]) == (
        pub["offset"],
        pub["epoch"],
        [],
    )


async def test_a_held_poll_is_woken_by_a_publication(srv: RunningServer) -> None:
    start = await poll_json(srv.url, channel="lp:wake")
    waiting = [
        asyncio.create_task(
            poll_json(srv.url, channel="lp:wake", since=start["offset"], epoch=start["epoch"])
        )
        for _ in range(20)
    ]
    await asyncio.sleep(0.3)
    assert not any(task.done() for task in waiting)
    started = time.monotonic()
    async with AsyncClient(srv.url) as api:
        pub = await api.publish("lp:wake", {"text": "hi"})
    pages = await asyncio.gather(*waiting)
    assert time.monotonic() - started < TIMEOUT / 2
    for page in pages:
        assert page["offset"] == pub["offset"]
        assert [(p["offset"], p["data"]) for p in page["publications"]] == [
            (pub["offset"], {"text": "hi"})
        ]


async def test_timeout_answers_an_empty_batch_with_the_current_offset(srv: RunningServer) -> None:
    async with AsyncClient(srv.url) as api:
        pub = await api.publish("lp:quiet", "only")
    started = time.monotonic()
    page = await poll_json(srv.url, channel="lp:quiet", since=pub["offset"])
    waited = time.monotonic() - started
    assert TIMEOUT * 0.9 <= waited < TIMEOUT + 2
    assert (page["offset"], page["epoch"], page["publications"], page["recoverable"]) == (
        pub["offset"],
        pub["epoch"],
        [],
        True,
    )


async def test_jsonp(srv: RunningServer) -> None:
    async with AsyncClient(srv.url) as api:
        pub = await api.publish("lp:jsonp", "</script><b>")
    status, headers, body = await poll(
        srv.url, channel="lp:jsonp", since=pub["offset"] - 1, callback="app.onData"
    )
    assert status == 200
    assert headers["Content-Type"] == "application/javascript; charset=utf-8"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert body.startswith(b"/**/app.onData(")
    assert body.endswith(b");")
    assert b"<" not in body
    page = orjson.loads(body[len(b"/**/app.onData(") : -2])
    assert page["publications"][0]["data"] == "</script><b>"


async def test_lost_history_or_epoch_is_not_recoverable(srv: RunningServer) -> None:
    async with AsyncClient(srv.url) as api:
        for n in range(5):
            last = await api.publish("trim:lp", n)
    trimmed = await poll_json(srv.url, channel="trim:lp", since=1, epoch=last["epoch"])
    assert (trimmed["recoverable"], trimmed["publications"], trimmed["offset"]) == (False, [], 5)
    retained = await poll_json(srv.url, channel="trim:lp", since=3, epoch=last["epoch"])
    assert [p["data"] for p in retained["publications"]] == [3, 4]
    other = await poll_json(srv.url, channel="trim:lp", since=3, epoch="restarted")
    assert (other["recoverable"], other["publications"], other["epoch"]) == (
        False,
        [],
        last["epoch"],
    )
    ahead = await poll_json(srv.url, channel="trim:lp", since=99)
    assert ahead["recoverable"] is False


async def test_a_new_page_gets_the_last_n_at_once_then_polls_on(srv: RunningServer) -> None:
    """Issue 18 (seed 004): since=0 on a channel whose history was trimmed is
    ``recoverable: false`` with nothing; ``last=N`` is the newest N kept."""
    async with AsyncClient(srv.url) as api:
        for n in range(5):
            await api.publish("trim:backlog", n)
    assert (await poll_json(srv.url, channel="trim:backlog", since=0))["recoverable"] is False
    started = time.monotonic()
    page = await poll_json(srv.url, channel="trim:backlog", last=1)
    assert time.monotonic() - started < TIMEOUT / 2
    assert [p["data"] for p in page["publications"]] == [4]
    assert page["recoverable"] is True
    page = await poll_json(srv.url, channel="trim:backlog", last=10)  # history_size = 2 kept
    assert [p["data"] for p in page["publications"]] == [3, 4]
    assert (await poll_json(srv.url, channel="trim:nothing", last=3))["publications"] == []
    held = asyncio.create_task(
        poll_json(srv.url, channel="trim:backlog", since=page["offset"], epoch=page["epoch"])
    )
    await asyncio.sleep(0.2)
    async with AsyncClient(srv.url) as api:
        await api.publish("trim:backlog", 5)
    assert [p["data"] for p in (await held)["publications"]] == [5]


@pytest.mark.parametrize(
    ("query", "status", "problem"),
    [
        ({"channel": "a", "callback": "alert(1)"}, 400, "'callback' must be a JavaScript name"),
        ({"channel": "a", "callback": "a-b"}, 400, "'callback' must be a JavaScript name"),
        ({}, 400, "'channel' must be a non-empty string"),
        ({"channel": "a\x01"}, 400, "control character"),
        ({"channel": "$key:a, 0, /x"}, 403, "reserved"),
        ({"channel": "a", "since": "-1"}, 400, "'since' must be a non-negative integer"),
        ({"channel": "a", "since": "x"}, 400, "'since' must be a non-negative integer"),
        ({"channel": "a", "epoch": "e"}, 400, "'epoch' must be non-empty and go with 'since'"),
        ({"channel": "a", "last": "x"}, 400, "'last' must be a non-negative integer"),
        ({"channel": "a", "last": "2", "since": "0"}, 400, "'last' and 'since' do not go"),
    ],
)
async def test_bad_queries_get_a_clear_error(
    srv: RunningServer, query: dict[str, str], status: int, problem: str
) -> None:
    got, _, body = await poll(srv.url, **query)
    assert got == status
    assert problem in orjson.loads(body)["error"]["message"]


BOUNDED = """
[poll]
timeout = 30
max_waiting = 2
"""


async def test_held_polls_are_bounded_and_released_when_clients_leave_or_shutdown(
    start_server: Callable[..., RunningServer],
) -> None:
    srv = start_server(BOUNDED)
    start = await poll_json(srv.url, channel="lp:bound")
    since = {"channel": "lp:bound", "since": start["offset"], "epoch": start["epoch"]}
    leaver = asyncio.create_task(poll(srv.url, **since))
    stayer = asyncio.create_task(poll(srv.url, **since))
    await asyncio.sleep(0.3)
    status, headers, body = await poll(srv.url, **since)
    assert (status, headers["Retry-After"]) == (503, "1")
    assert "poll again shortly" in orjson.loads(body)["error"]["message"]

    leaver.cancel()  # the client goes away: its poll is released within a sweep
    deadline = time.monotonic() + 5
    while True:
        replacement = asyncio.create_task(poll(srv.url, **since))
        await asyncio.sleep(0.3)
        if not replacement.done():
            break
        assert replacement.result()[0] == 503
        assert time.monotonic() < deadline, "the departed client's poll was never released"

    started = time.monotonic()
    stopping = asyncio.create_task(asyncio.to_thread(srv.stop))
    for task in (stayer, replacement):
        status, _, body = await task
        assert status == 200
        assert orjson.loads(body)["publications"] == []
    assert time.monotonic() - started < 5
    assert await stopping == 0
