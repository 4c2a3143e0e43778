"""Nothing but ``@expose``d methods is reachable, whatever name a browser sends.

A browser's method name is looked up in the class's table of exposed methods
and never used as an attribute name. The property test sends names of every
kind (dunders, dotted paths, attributes of the element class and of modules,
any text) to a real session and checks that each is refused unless exposed,
and that the element saw no attribute lookup by that name.
"""

from __future__ import annotations

import asyncio
import builtins
import os
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orbiter.live import LiveElement, expose
from orbiter.protocol.native import ErrorCode
from tests.live import sample
from tests.live.sample import Spy, make_spy
from tests.live.support import attach, call, live_session

EXPOSED = {
    "add",
    "optional",
    "slow",
    "fail",
    "fail_loudly",
    "fail_later",
    "unsendable",
    "ask",
    "relay",
    "whoami",
}


def test_the_table_holds_exactly_the_exposed_methods() -> None:
    assert set(sample.Sample.exposed) == EXPOSED
    assert set(sample.Narrower.exposed) == EXPOSED - {"add"}
    assert LiveElement.exposed == {}


def test_expose_refuses_what_is_not_a_plain_function() -> None:
    with pytest.raises(TypeError, match="@expose takes a function"):
        expose(staticmethod(lambda: 1))
    with pytest.raises(TypeError, match="@expose takes a function"):
        expose(print)


def test_private_names_cannot_be_exposed() -> None:
    with pytest.raises(TypeError, match="starting with '_' cannot be exposed"):

        class Bad(LiveElement):
            @expose
            def _secret(self) -> None: ...


def test_an_exposed_flag_set_by_hand_on_a_non_function_exposes_nothing() -> None:
    class Sneaky:
        __orbiter_exposed__ = True

        def __call__(self) -> str:
            return "ran"

    class Holder(LiveElement):
        thing = Sneaky()

    assert "thing" not in Holder.exposed


_names_of_things = sorted(
    set(dir(sample.Sample))
    | set(dir(Spy))
    | set(dir(os))
    | set(dir(asyncio))
    | set(dir(builtins))
    | set(vars(sample))
)
_dunder = st.from_regex(r"__[a-z]{1,12}__", fullmatch=True)
_dotted = st.lists(
    st.one_of(st.sampled_from(_names_of_things), _dunder), min_size=2, max_size=4
).map(".".join)
NAMES = st.one_of(
    st.sampled_from(_names_of_things),
    _dunder,
    _dotted,
    st.sampled_from(sorted(EXPOSED)).map(lambda n: n + ".__globals__"),
    st.text(max_size=40),
)


async def _one(name: str) -> tuple[dict[str, Any], list[str]]:
    session = await live_session()
    element_id = await attach(session, "/spy")
    spy = sample.MADE[-1]
    assert isinstance(spy, Spy)
    spy.watching = True
    await session.receive(
        orjson.dumps({"id": 9, "op": "call", "element": element_id, "method": name, "args": []})
    )
    reply = await call(session, element_id, name, id_=10)
    spy.watching = False
    await session.finish()
    return reply, spy.looked_up


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(NAMES)
def test_no_name_reaches_anything_not_exposed(name: str) -> None:
    reply, looked_up = asyncio.run(_one(name))
    if name in EXPOSED:
        return  # exposed: reachable (with these arguments it may well fail)
    assert "error" in reply, (name, reply)
    assert reply["error"]["code"] in (ErrorCode.NOT_EXPOSED, ErrorCode.BAD_REQUEST), reply
    assert name not in looked_up
    assert not any(n in looked_up for n in name.split(".")), looked_up


def test_the_spy_would_see_a_lookup() -> None:
    """The property above could fail: a lookup by name on the element is recorded."""
    spy = make_spy()
    spy.watching = True
    name = "hidden"  # as a browser would send it
    getattr(spy, name)()  # what a getattr-based dispatch would do
    assert "hidden" in spy.looked_up
