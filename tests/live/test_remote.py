"""Server-to-browser calls (``call_remote``): ids, answers, errors, time-outs, disconnects."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from orbiter.live import ConnectionLost, NotJSON, RemoteError, RemoteTimeout, TooManyCalls
from orbiter.protocol.native import DisconnectCode, ErrorCode
from orbiter.session.session import ClientSession
from tests.live import sample
from tests.live.support import attach, drain, live_config, live_session, send


async def _pushes(session: ClientSession, count: int = 1) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for _ in range(200):
        found += [m for m in await drain(session) if m.get("push") == "call"]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.005)
    raise AssertionError(f"expected {count} call pushes, got {found}")


async def test_call_remote_pushes_a_call_and_the_return_settles_it() -> None:
    session = await live_session()
    element_id = await attach(session)
    element = sample.MADE[-1]
    first = element.call_remote("answer", "to be", {"or": [1, None]})
    second = element.call_remote("other")
    a, b = await _pushes(session, 2)
    assert a == {
        "push": "call",
        "call": 1,
        "element": element_id,
        "method": "answer",
        "args": ["to be", {"or": [1, None]}],
    }
    assert b["call"] == 2
    # Answered out of order: each settles its own future.
    await send(session, {"op": "return", "call": 2, "value": "second"})
    await send(session, {"op": "return", "call": 1, "value": {"it": "first"}})
    assert await second == "second"
    assert await first == {"it": "first"}


async def test_an_exposed_method_may_await_the_browser() -> None:
    session = await live_session()
    element_id = await attach(session)
    await session.receive(
        orjson.dumps({"id": 9, "op": "call", "element": element_id, "method": "ask", "args": ["q"]})
    )
    [push] = await _pushes(session)
    assert (push["method"], push["args"]) == ("answer", ["q"])
    replies = await send(session, {"op": "return", "call": push["call"], "value": "q!"})
    for _ in range(100):
        if replies:
            break
        await asyncio.sleep(0.005)
        replies = await drain(session)
    assert replies == [{"id": 9, "result": {"value": "q!"}}]


async def test_a_widget_error_is_a_remote_error_with_its_type_and_message() -> None:
    session = await live_session()
    await attach(session)
    future = sample.MADE[-1].call_remote("answer")
    [push] = await _pushes(session)
    error = {"type": "TypeError", "message": "x is undefined"}
    assert await send(session, {"op": "return", "call": push["call"], "error": error}) == []
    with pytest.raises(RemoteError) as info:
        await future
    assert (info.value.type, info.value.message) == ("TypeError", "x is undefined")


async def test_an_unanswered_call_times_out_and_a_late_answer_is_ignored() -> None:
    session = await live_session()
    await attach(session)
    future = sample.MADE[-1].call_remote("answer", timeout=0.05)
    [push] = await _pushes(session)
    with pytest.raises(RemoteTimeout, match=r"did not answer answer\(\) in 0.05 s"):
        await future
    # Late, unknown and repeated answers change nothing and get no reply.
    assert await send(session, {"op": "return", "call": push["call"], "value": 1}) == []
    assert await send(session, {"op": "return", "call": 12345, "value": 1}) == []
    assert (await send(session, {"id": 5, "op": "ping"})) == [{"id": 5, "result": {}}]


async def test_the_default_timeout_is_live_call_timeout() -> None:
    session = await live_session(live_config(call_timeout=0.05))
    await attach(session)
    with pytest.raises(RemoteTimeout, match=r"0\.05 s"):
        await sample.MADE[-1].call_remote("answer")


async def test_outstanding_calls_to_the_browser_are_limited() -> None:
    session = await live_session(live_config(max_calls=2))
    await attach(session)
    element = sample.MADE[-1]
    waiting = [element.call_remote("answer"), element.call_remote("answer")]
    with pytest.raises(TooManyCalls, match=r"live\.max_calls"):
        await element.call_remote("answer")
    [push, _] = await _pushes(session, 2)
    await send(session, {"op": "return", "call": push["call"], "value": None})
    assert await waiting[0] is None
    third = element.call_remote("answer")  # room again
    [push3] = await _pushes(session)
    await send(session, {"op": "return", "call": push3["call"], "value": 3})
    assert await third == 3
    await session.finish()
    with pytest.raises(ConnectionLost):
        await waiting[1]


async def test_arguments_json_cannot_carry_raise_at_once_naming_them() -> None:
    session = await live_session(live_config(max_calls=1))
    await attach(session)
    with pytest.raises(NotJSON, match=r"the arguments of answer\(\) cannot be sent as JSON"):
        sample.MADE[-1].call_remote("answer", {1, 2})
    # Nothing was sent, and the refused call holds no place among the outstanding.
    sample.MADE[-1].call_remote("answer")
    [push] = await _pushes(session)
    assert push["args"] == []


async def test_a_disconnect_fails_waiting_calls_runs_detached_and_later_calls_fail_fast() -> None:
    session = await live_session()
    await attach(session)
    element = sample.MADE[-1]
    waiting = element.call_remote("answer")
    await _pushes(session)
    await session.finish()
    with pytest.raises(ConnectionLost):
        await waiting
    assert element.events == ["attached", "detached"]
    assert not element.is_attached
    with pytest.raises(ConnectionLost):
        await element.call_remote("answer")


async def test_a_server_closed_connection_fails_calls_fast() -> None:
    session = await live_session()
    await attach(session)
    session.close(DisconnectCode.SHUTDOWN, "server shutting down")
    with pytest.raises(ConnectionLost):
        await sample.MADE[-1].call_remote("answer")


async def test_a_browser_call_racing_a_disconnect_is_cancelled_and_never_answered() -> None:
    session = await live_session()
    element_id = await attach(session)
    element = sample.MADE[-1]
    await session.receive(
        orjson.dumps({"id": 9, "op": "call", "element": element_id, "method": "slow", "args": [5]})
    )
    await asyncio.sleep(0.01)
    await session.finish()
    await asyncio.sleep(0.01)
    assert element.cancelled
    assert element.events == ["attached", "detached"]
    assert session.outbox.closed


async def test_a_disconnect_between_attach_and_attached_skips_attached() -> None:
    session = await live_session()
    await session.receive(orjson.dumps({"id": 2, "op": "attach", "mount": "/sample"}))
    await session.finish()  # before the loop ran the attached hook
    await asyncio.sleep(0.01)
    assert sample.MADE[-1].events == ["detached"]


async def test_malformed_returns_are_errors_without_an_id() -> None:
    session = await live_session()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"call": "1"}, "'call' must be a positive integer"),
        ({"call": 1, "error": "boom"}, "'return' 'error' must be an object"),
        ({"call": 1, "error": {"type": 1}}, "must be strings"),
    ]
    for fields, message in cases:
        [reply] = await send(session, {"op": "return", **fields})
        assert reply["id"] is None
        assert reply["error"]["code"] == ErrorCode.BAD_REQUEST
        assert message in reply["error"]["message"]


async def test_an_element_never_attached_cannot_call() -> None:
    with pytest.raises(ConnectionLost, match="not attached"):
        await sample.Sample().call_remote("answer")
