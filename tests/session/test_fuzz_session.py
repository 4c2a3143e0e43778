"""Fuzzing the native protocol through a whole client session (parser, auth, permissions,
limits): no input makes it raise, every reply is well-formed, and another session on the
same PubSub keeps working."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orbiter.config.settings import AuthSettings, ChannelRule, Config, Limits
from orbiter.engine.memory import MemoryBroker, MemoryPresenceStore
from orbiter.services.pubsub import PubSub
from orbiter.session.session import ClientSession
from tests.support.keys import SECRET, token

CONFIG = replace(
    Config(),
    auth=AuthSettings(secret=SECRET),
    limits=replace(Limits(), max_subscriptions=4, publish_burst=5),
    channels=(
        ChannelRule(match="chat:*", client_publish=True, presence=True),
        ChannelRule(match="team:*", subscribe="token", client_publish=True),
        ChannelRule(match="private:*", subscribe="private"),
    ),
)
GOOD = token("ann", channels=["team:a"], ttl=None)  # made at import: must not expire

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_channels = st.sampled_from(["chat:a", "team:a", "team:b", "private:x", "$key:x", "", "news"])
_command = st.fixed_dictionaries(
    {
        "id": st.one_of(st.integers(min_value=-2, max_value=40), st.text(max_size=3), st.none()),
        "op": st.sampled_from(
            ["connect", "subscribe", "unsubscribe", "publish", "presence", "ping", "refresh", "x"]
        ),
    },
    optional={
        "channel": st.one_of(_channels, _json),
        "data": _json,
        "token": st.one_of(st.just(GOOD), st.text(max_size=20), _json),
        "since": st.one_of(
            st.fixed_dictionaries({"offset": st.integers(-1, 5), "epoch": st.text(max_size=4)}),
            _json,
        ),
        "key": st.one_of(st.just("ann, 0, /x"), st.just("bob, 0, /x"), _json),
        "user": _json,
        "location": _json,
        "info": _json,
    },
)
_message = st.one_of(
    st.lists(_command, min_size=1, max_size=6).map(
        lambda cmds: b"\n".join(orjson.dumps(c) for c in cmds)
    ),
    st.binary(max_size=120),
)


async def _run(messages: list[bytes]) -> None:
    pubsub = PubSub(CONFIG, MemoryBroker(), MemoryPresenceStore())
    bystander = ClientSession(pubsub, CONFIG, peer="bystander")
    await bystander.receive(orjson.dumps({"id": 1, "op": "connect", "token": GOOD}))
    await bystander.receive(orjson.dumps({"id": 2, "op": "subscribe", "channel": "chat:a"}))
    fuzzed = ClientSession(pubsub, CONFIG, peer="fuzz")
    for message in messages:
        await fuzzed.receive(message)  # must not raise
        if fuzzed.closed:
            break
    for item in fuzzed.outbox._items:
        obj: Any = orjson.loads(item)
        assert isinstance(obj, dict)
        assert "push" in obj or "result" in obj or isinstance(obj["error"]["code"], int)
    await fuzzed.finish()
    await pubsub.publish("chat:a", "still fine")
    pushes: list[Any] = []
    for _ in range(100):  # fan-out runs at the end of a loop iteration
        await asyncio.sleep(0)
        pushes = [orjson.loads(i) for i in bystander.outbox._items if b'"push"' in i]
        if pushes:
            break
    assert {
        "push": "pub",
        "channel": "chat:a",
        "offset": pushes[-1]["offset"],
        "data": "still fine",
    } == pushes[-1]
    await bystander.finish()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_message, min_size=1, max_size=5))
def test_no_input_makes_the_session_raise_or_harms_another(messages: list[bytes]) -> None:
    asyncio.run(_run(messages))
