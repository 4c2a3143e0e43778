"""Whatever live-element messages a browser sends, the session answers and stays up."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.live.support import drain, live_session

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
_names = st.one_of(
    st.sampled_from(["add", "optional", "fail", "unsendable", "whoami", "hidden", "__init__"]),
    st.text(max_size=12),
    _values,
)
_message = st.fixed_dictionaries(
    {"op": st.sampled_from(["attach", "call", "rpc", "return"])},
    optional={
        "id": st.one_of(st.integers(min_value=-2, max_value=50), _values),
        "mount": st.one_of(st.sampled_from(["/sample", "/broken", "/nope", "/"]), _values),
        "element": st.one_of(st.integers(min_value=-1, max_value=3), _values),
        "method": _names,
        "args": st.one_of(st.lists(_values, max_size=3), _values),
        "data": _values,
        "call": st.one_of(st.integers(min_value=-1, max_value=5), _values),
        "value": _values,
        "error": _values,
        "resume": _values,
    },
)


async def _run(messages: list[dict[str, Any]]) -> None:
    session = await live_session()
    for message in messages:
        await session.receive(orjson.dumps(message))
    await drain(session)
    assert not session.closed
    [pong] = await _ping(session)
    assert pong == {"id": 999, "result": {}}
    await session.finish()


async def _ping(session: Any) -> list[dict[str, Any]]:
    await session.receive(b'{"id": 999, "op": "ping"}')
    for _ in range(50):
        replies = [m for m in await drain(session) if m.get("id") == 999]
        if replies:
            return replies
        await asyncio.sleep(0.001)
    raise AssertionError("no pong")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_message, max_size=8))
def test_any_live_messages_leave_the_session_answering(messages: list[dict[str, Any]]) -> None:
    asyncio.run(_run(messages))
