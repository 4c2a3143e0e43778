"""A page back before the server noticed its old connection end takes its element over.

Over polling transports the server notices a connection ended only after
``sockjs.disconnect_delay``; a page that reconnects sooner attaches with its
``resume`` token while the old connection still holds the element. The new
connection takes it (same element, no hook, a new token); the old one loses
it for good. The token's rules are those of a parked element: the same
mount, the same user, once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orbiter.live import ConnectionLost
from orbiter.services.live.host import LiveHost
from orbiter.session.session import ClientSession
from tests.live import sample
from tests.live.support import call, drain, live_config, live_session, send


async def _attach(
    session: ClientSession, resume: str | None = None, mount: str = "/sample", id_: int = 2
) -> dict[str, Any]:
    fields: dict[str, Any] = {"id": id_, "op": "attach", "mount": mount}
    if resume is not None:
        fields["resume"] = resume
    replies = await send(session, fields)
    [reply] = [r for r in replies if r.get("id") == id_]
    assert "result" in reply, reply
    result: dict[str, Any] = reply["result"]
    return result


async def _ann_with_element(
    grace: float = 5.0,
) -> tuple[LiveHost, Any, ClientSession, dict[str, Any], sample.Sample]:
    config = live_config(grace_period=grace)
    host = LiveHost(config.live)
    old = await live_session(config, host, user="ann", location="/x")
    attached = await _attach(old)
    await asyncio.sleep(0)  # the attached hook
    return host, config, old, attached, sample.MADE[-1]


async def test_a_new_connection_takes_the_element_from_the_old_one_still_open() -> None:
    host, config, old, attached, element = await _ann_with_element()
    assert host.parking.held == 1
    new = await live_session(config, host, user="ann", location="/x")
    again = await _attach(new, attached["resume"], id_=3)
    assert again["resumed"] is True
    assert again["resume"] != attached["resume"]  # a new token: the old one is spent
    assert sample.MADE[-1] is element  # no new element made
    assert element.events == ["attached"]  # no hook ran
    reply = await call(new, again["element"], "whoami")
    assert reply["result"]["value"]["client"] == new.client_id
    # The old connection has lost it: its page's calls find nothing, the app server
    # no longer sees it there.
    assert old.live is not None
    assert old.live.widgets() == []
    lost = await call(old, attached["element"], "whoami", id_=11)
    assert lost["error"]["code"] == 112
    assert "no element 1 on this connection" in lost["error"]["message"]

    # The old connection's end, when the server notices it, neither parks nor detaches it.
    await old.finish()
    await asyncio.sleep(0.01)
    assert element.events == ["attached"]
    assert len(host.parking) == 0
    assert host.parking.held == 1  # the new connection's token
    assert element.is_attached
    # The new connection's end parks it as usual, under the new token.
    await new.finish()
    assert len(host.parking) == 1
    assert host.parking.held == 0
    back = await live_session(config, host, user="ann", location="/x")
    assert (await _attach(back, again["resume"]))["resumed"] is True
    assert sample.MADE[-1] is element
    assert element.events == ["attached"]


async def test_the_old_token_is_spent_by_a_takeover() -> None:
    host, config, _old, attached, element = await _ann_with_element()
    new = await live_session(config, host, user="ann", location="/x")
    assert (await _attach(new, attached["resume"]))["resumed"] is True
    # The spent token takes it from nowhere: not from the new connection, nor from
    # the parking once the new connection is gone.
    third = await live_session(config, host, user="ann", location="/x")
    assert (await _attach(third, attached["resume"]))["resumed"] is False
    assert sample.MADE[-1] is not element
    reply = await call(new, 1, "whoami")
    assert reply["result"]["value"]["client"] == new.client_id  # still the new one's
    await new.finish()
    fourth = await live_session(config, host, user="ann", location="/x")
    assert (await _attach(fourth, attached["resume"]))["resumed"] is False
    assert sample.MADE[-1] is not element
    assert len(host.parking) == 1  # still waiting for its new token


@pytest.mark.parametrize(
    ("who", "mount"),
    [("eve", "/sample"), (None, "/sample"), ("ann", "/narrower")],
    ids=["another-user", "no-user", "another-mount"],
)
async def test_another_user_or_mount_cannot_take_it(who: str | None, mount: str) -> None:
    host, config, old, attached, element = await _ann_with_element()
    identity = {"user": who, "location": "/x"} if who is not None else {}
    thief = await live_session(config, host, **identity)
    stolen = await _attach(thief, attached["resume"], mount=mount)
    assert stolen["resumed"] is False
    assert sample.MADE[-1] is not element
    # Still the old connection's, and the token still good for ann.
    reply = await call(old, attached["element"], "whoami")
    assert reply["result"]["value"]["client"] == old.client_id
    assert element.is_attached
    assert element.client_id == old.client_id
    new = await live_session(config, host, user="ann", location="/x")
    assert (await _attach(new, attached["resume"]))["resumed"] is True


async def test_a_connection_cannot_take_its_own_element_twice() -> None:
    _host, _config, old, attached, element = await _ann_with_element()
    again = await _attach(old, attached["resume"], id_=3)
    assert again["resumed"] is False  # a second, new element
    assert sample.MADE[-1] is not element
    assert element.client_id == old.client_id
    assert old.live is not None
    assert sorted(e for e, _ in old.live.widgets()) == [1, 2]


async def test_calls_to_the_old_widget_fail_and_the_old_page_s_calls_stop() -> None:
    host, config, old, attached, element = await _ann_with_element()
    waiting = element.call_remote("answer", "q")  # pushed to the old page, never answered
    await old.receive(
        b'{"id": 9, "op": "call", "element": 1, "method": "slow", "args": [30]}'
    )  # the old page's call, running
    await asyncio.sleep(0.01)
    pushed = [m for m in await drain(old) if m.get("push") == "call"]
    assert [p["method"] for p in pushed] == ["answer"]

    new = await live_session(config, host, user="ann", location="/x")
    assert (await _attach(new, attached["resume"]))["resumed"] is True
    with pytest.raises(ConnectionLost, match="on a new connection before the answer"):
        await asyncio.wait_for(waiting, 1)
    await asyncio.sleep(0.01)
    assert element.cancelled  # the old page's call was cancelled, not answered
    assert [m for m in await drain(old) if m.get("id") == 9] == []
    # A late answer on the old connection settles nothing and says nothing.
    assert await send(old, {"op": "return", "call": pushed[0]["call"], "value": "late"}) == []
    # The element's calls now go to the new page.
    answered = element.call_remote("answer", "again")
    await asyncio.sleep(0.01)
    [push] = [m for m in await drain(new) if m.get("push") == "call"]
    assert (push["method"], push["args"]) == ("answer", ["again"])
    await send(new, {"op": "return", "call": push["call"], "value": "again!"})
    assert await asyncio.wait_for(answered, 1) == "again!"
