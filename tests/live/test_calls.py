"""Browser-to-server calls through a real native session: ids, results, errors, limits."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from orbiter.protocol.native import ErrorCode
from tests.live import sample
from tests.live.support import attach, call, drain, live_config, live_session, send


async def test_attach_makes_one_element_per_attach_and_runs_attached_after_the_reply() -> None:
    session = await live_session()
    before = len(sample.MADE)
    [reply] = await send(session, {"id": 2, "op": "attach", "mount": "/sample"})
    assert reply["id"] == 2
    assert reply["result"] == {
        "element": 1,
        "widget": "SampleWidget",
        "resume": reply["result"]["resume"],
        "resumed": False,
    }
    assert len(reply["result"]["resume"]) >= 20  # a secret: 128 random bits
    element = sample.MADE[-1]
    assert len(sample.MADE) == before + 1
    assert element.events == ["attached"]
    assert await attach(session, id_=3) == 2  # a second element, its own id
    assert sample.MADE[-1] is not element


async def test_a_call_gets_its_value_under_its_own_id() -> None:
    session = await live_session()
    element = await attach(session)
    assert await call(session, element, "add", 2, 3, id_=7) == {"id": 7, "result": {"value": 5}}
    reply = await call(session, element, "optional", 1, id_=8)
    assert reply["result"]["value"] == [1, 2]
    reply = await call(session, element, "optional", 1, 5, 6, 7, id_=9)
    assert reply["result"]["value"] == [1, 5, 6, 7]


async def test_async_methods_reply_when_done_without_holding_other_commands() -> None:
    session = await live_session()
    element = await attach(session)
    await session.receive(
        orjson.dumps({"id": 20, "op": "call", "element": element, "method": "slow", "args": [0.2]})
    )
    # The slow call runs as a task: a quick one after it is answered first.
    quick = await call(session, element, "add", 1, 1, id_=21)
    assert quick["result"]["value"] == 2
    replies: list[dict[str, Any]] = []
    for _ in range(100):
        replies += await drain(session)
        if replies:
            break
        await asyncio.sleep(0.01)
    assert replies == [{"id": 20, "result": {"value": "done"}}]


async def test_a_raised_exception_is_its_type_and_message_without_traceback() -> None:
    session = await live_session()
    element = await attach(session)
    reply = await call(session, element, "fail")
    assert reply["error"] == {
        "code": ErrorCode.CALL_FAILED,
        "type": "ValueError",
        "message": "bad value",
    }
    reply = await call(session, element, "fail_later", id_=11)
    assert reply["error"]["type"] == "KeyError"
    assert "traceback" not in reply["error"]


async def test_an_exception_s_message_is_cut_to_a_bound() -> None:
    session = await live_session()
    element = await attach(session)
    reply = await call(session, element, "fail_loudly")
    assert reply["error"]["type"] == "RuntimeError"
    assert reply["error"]["message"] == "x" * 4096


async def test_debug_sends_the_traceback() -> None:
    session = await live_session(live_config(debug=True))
    element = await attach(session)
    reply = await call(session, element, "fail")
    assert "Traceback" in reply["error"]["traceback"]
    assert "bad value" in reply["error"]["traceback"]


async def test_unknown_and_hidden_methods_are_not_exposed() -> None:
    session = await live_session()
    element = await attach(session)
    for i, name in enumerate(["nope", "hidden", "attached", "__init__", "secret", "call_remote"]):
        reply = await call(session, element, name, id_=30 + i)
        assert reply["error"]["code"] == ErrorCode.NOT_EXPOSED, name
        assert "exposes no method" in reply["error"]["message"]
    assert sample.MADE[-1].events == ["attached"]  # nothing ran


async def test_an_override_without_expose_withdraws_the_method() -> None:
    session = await live_session()
    element = await attach(session, "/narrower")
    reply = await call(session, element, "add", 1, 2)
    assert reply["error"]["code"] == ErrorCode.NOT_EXPOSED
    assert (await call(session, element, "fail", id_=11))["error"]["type"] == "ValueError"


async def test_unknown_element_and_mount() -> None:
    session = await live_session()
    reply = await call(session, 99, "add", 1, 2)
    assert reply["error"] == {
        "code": ErrorCode.NOT_EXPOSED,
        "message": "no element 99 on this connection",
    }
    [reply] = await send(session, {"id": 3, "op": "attach", "mount": "/elsewhere"})
    assert reply["error"]["code"] == ErrorCode.NOT_EXPOSED
    assert "/elsewhere" in reply["error"]["message"]


async def test_wrong_argument_counts_are_bad_requests_and_nothing_runs() -> None:
    session = await live_session()
    element = await attach(session)
    reply = await call(session, element, "add", 1)
    assert reply["error"]["code"] == ErrorCode.BAD_REQUEST
    assert reply["error"]["message"] == "add(): missing a required argument: 'b'"
    reply = await call(session, element, "add", 1, 2, 3, id_=11)
    assert reply["error"]["message"] == "add(): too many positional arguments"
    reply = await call(session, element, "fail", 1, id_=12)
    assert reply["error"]["code"] == ErrorCode.BAD_REQUEST  # fail() never ran: no ValueError


async def test_malformed_calls_name_the_field() -> None:
    session = await live_session()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"element": "1", "method": "add"}, "'element' must be a positive integer"),
        ({"element": 1, "method": 5}, "'call' needs 'method'"),
        ({"element": 1, "method": "add", "args": {"a": 1}}, "'call' 'args' must be an array"),
    ]
    for i, (fields, message) in enumerate(cases):
        [reply] = await send(session, {"id": 40 + i, "op": "call", **fields})
        assert reply["error"]["code"] == ErrorCode.BAD_REQUEST
        assert message in reply["error"]["message"]


async def test_a_result_json_cannot_carry_is_a_clear_error() -> None:
    session = await live_session()
    element = await attach(session)
    reply = await call(session, element, "unsendable")
    assert reply["error"]["code"] == ErrorCode.CALL_FAILED
    assert reply["error"]["type"] == "TypeError"
    assert reply["error"]["message"].startswith("the result of unsendable() cannot be sent as JSON")


async def test_calls_before_connect_are_refused() -> None:
    config = live_config()
    from orbiter.engine.memory import MemoryBroker, MemoryPresenceStore
    from orbiter.services.live.host import LiveHost
    from orbiter.services.pubsub import PubSub
    from orbiter.session.session import ClientSession

    pubsub = PubSub(config, MemoryBroker(), MemoryPresenceStore())
    session = ClientSession(pubsub, config, peer="t", live=LiveHost(config.live))
    [reply] = await send(session, {"id": 1, "op": "attach", "mount": "/sample"})
    assert reply["error"]["code"] == ErrorCode.NOT_CONNECTED


async def test_a_long_call_is_cut_at_call_timeout() -> None:
    session = await live_session(live_config(call_timeout=0.1))
    element = await attach(session)
    reply = await call(session, element, "slow", 5)
    assert reply["error"]["code"] == ErrorCode.CALL_TIMEOUT
    assert "slow() did not finish in 0.1 s" in reply["error"]["message"]
    assert sample.MADE[-1].cancelled


async def test_call_rate_is_limited_like_publishes() -> None:
    session = await live_session(live_config(call_rate=0.001, call_burst=3))
    element = await attach(session)
    for i in range(3):
        assert "result" in await call(session, element, "add", 1, 1, id_=50 + i)
    reply = await call(session, element, "add", 1, 1, id_=60)
    assert reply["error"]["code"] == ErrorCode.LIMIT_EXCEEDED
    assert "live.call_rate" in reply["error"]["message"]
    assert session.counters["limit_call_rate"] == 1


async def test_running_calls_per_connection_are_limited() -> None:
    session = await live_session(live_config(max_calls=2))
    element = await attach(session)
    for i in range(2):
        await session.receive(
            orjson.dumps(
                {"id": 70 + i, "op": "call", "element": element, "method": "slow", "args": [5]}
            )
        )
    reply = await call(session, element, "slow", 5, id_=72)
    assert reply["error"]["code"] == ErrorCode.LIMIT_EXCEEDED
    assert "live.max_calls" in reply["error"]["message"]
    await session.finish()


async def test_elements_per_connection_are_limited() -> None:
    session = await live_session(live_config(max_elements=2))
    await attach(session, id_=2)
    await attach(session, id_=3)
    [reply] = await send(session, {"id": 4, "op": "attach", "mount": "/sample"})
    assert reply["error"]["code"] == ErrorCode.LIMIT_EXCEEDED
    assert "live.max_elements" in reply["error"]["message"]


async def test_a_factory_that_makes_no_element_is_an_error_not_a_crash() -> None:
    session = await live_session()
    [reply] = await send(session, {"id": 2, "op": "attach", "mount": "/broken"})
    assert reply["error"]["code"] == ErrorCode.INTERNAL
    assert (await send(session, {"id": 3, "op": "ping"})) == [{"id": 3, "result": {}}]


async def test_the_element_sees_the_connection_identity() -> None:
    session = await live_session(user="ann", location="/chat")
    element = await attach(session)
    reply = await call(session, element, "whoami")
    assert reply["result"]["value"] == {"user": "ann", "client": session.client_id}
