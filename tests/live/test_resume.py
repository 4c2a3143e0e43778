"""A page that reconnects within ``live.grace_period`` gets its element back (``resume``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orbiter.protocol.native import ErrorCode
from orbiter.services.live.host import LiveHost
from tests.live import sample
from tests.live.support import call, live_config, live_session, send


async def _attach(session: Any, resume: str | None = None, id_: int = 2) -> dict[str, Any]:
    fields: dict[str, Any] = {"id": id_, "op": "attach", "mount": "/sample"}
    if resume is not None:
        fields["resume"] = resume
    replies = await send(session, fields)
    [reply] = [r for r in replies if r.get("id") == id_]
    assert "result" in reply, reply
    result: dict[str, Any] = reply["result"]
    return result


async def test_a_reconnect_within_the_grace_period_gets_the_same_element() -> None:
    config = live_config(grace_period=5.0)
    host = LiveHost(config.live)
    first = await live_session(config, host, user="ann", location="/x")
    attached = await _attach(first)
    element = sample.MADE[-1]
    await first.finish()  # the connection drops
    await asyncio.sleep(0.01)
    assert element.events == ["attached"]  # kept: not detached
    assert len(host.parking) == 1

    second = await live_session(config, host, user="ann", location="/x")
    again = await _attach(second, attached["resume"])
    assert again["resumed"] is True
    assert again["resume"] != attached["resume"]  # a new token: each is used once
    assert sample.MADE[-1] is element  # no new element made
    assert element.events == ["attached"]  # no hook ran
    reply = await call(second, again["element"], "whoami")
    assert reply["result"]["value"]["client"] == second.client_id  # bound to the new connection
    assert len(host.parking) == 0
    # The token was taken: a third connection cannot have the element too.
    third = await live_session(config, host, user="ann", location="/x")
    other = await _attach(third, attached["resume"])
    assert other["resumed"] is False
    assert sample.MADE[-1] is not element


async def test_after_the_grace_period_the_element_is_detached_and_a_resume_gets_a_new_one() -> None:
    config = live_config(grace_period=0.05)
    host = LiveHost(config.live)
    first = await live_session(config, host)
    attached = await _attach(first)
    element = sample.MADE[-1]
    await first.finish()
    await asyncio.sleep(0.15)
    assert element.events == ["attached", "detached"]
    second = await live_session(config, host)
    again = await _attach(second, attached["resume"])
    assert again["resumed"] is False
    assert sample.MADE[-1] is not element


async def test_only_the_same_user_may_resume() -> None:
    config = live_config(grace_period=5.0)
    host = LiveHost(config.live)
    first = await live_session(config, host, user="ann", location="/x")
    attached = await _attach(first)
    element = sample.MADE[-1]
    await first.finish()
    thief = await live_session(config, host, user="eve", location="/x")
    stolen = await _attach(thief, attached["resume"])
    assert stolen["resumed"] is False
    assert sample.MADE[-1] is not element
    assert len(host.parking) == 1  # still waiting for ann
    ann = await live_session(config, host, user="ann", location="/x")
    assert (await _attach(ann, attached["resume"]))["resumed"] is True


async def test_a_full_parking_or_no_grace_detaches_at_once() -> None:
    for settings in ({"grace_period": 0.0}, {"grace_period": 5.0, "max_parked": 1}):
        config = live_config(**settings)
        host = LiveHost(config.live)
        sessions = [await live_session(config, host) for _ in range(2)]
        elements = []
        for session in sessions:
            await _attach(session)
            elements.append(sample.MADE[-1])
        for session in sessions:
            await session.finish()
        await asyncio.sleep(0.01)
        detached = [e for e in elements if "detached" in e.events]
        assert len(detached) == (2 if settings["grace_period"] == 0 else 1), settings
        assert len(host.parking) == 2 - len(detached)


async def test_stopping_the_node_detaches_parked_elements() -> None:
    config = live_config(grace_period=60.0)
    host = LiveHost(config.live)
    session = await live_session(config, host)
    await _attach(session)
    element = sample.MADE[-1]
    await session.finish()
    assert element.events == ["attached"]
    await host.close()
    assert element.events == ["attached", "detached"]
    assert len(host.parking) == 0


@pytest.mark.parametrize("resume", [5, "", "x" * 129])
async def test_a_malformed_resume_is_a_bad_request(resume: Any) -> None:
    session = await live_session()
    [reply] = await send(session, {"id": 2, "op": "attach", "mount": "/sample", "resume": resume})
    assert reply["error"]["code"] == ErrorCode.BAD_REQUEST
    assert "'resume'" in reply["error"]["message"]
