"""The native ``history`` op: pages of a subscribed channel's history, newest first page,
then further back with ``before``; refused on a channel the connection has not joined."""

from __future__ import annotations

from tests.session.test_session import connected, make, send


async def test_history_pages_back_from_the_newest() -> None:
    pubsub = make()
    for i in range(7):
        await pubsub.publish("chat:a", i)
    session, _ = await connected(pubsub)
    await send(session, {"id": 2, "op": "subscribe", "channel": "chat:a"})

    [newest] = await send(session, {"id": 3, "op": "history", "channel": "chat:a", "limit": 3})
    result = newest["result"]
    assert result["offset"] == 7
    assert result["recoverable"] is True
    assert [(p["offset"], p["data"]) for p in result["publications"]] == [(5, 4), (6, 5), (7, 6)]

    [older] = await send(
        session, {"id": 4, "op": "history", "channel": "chat:a", "limit": 3, "before": 5}
    )
    assert [p["data"] for p in older["result"]["publications"]] == [1, 2, 3]
    [oldest] = await send(
        session, {"id": 5, "op": "history", "channel": "chat:a", "limit": 3, "before": 2}
    )
    assert [p["data"] for p in oldest["result"]["publications"]] == [0]
    [empty] = await send(
        session, {"id": 6, "op": "history", "channel": "chat:a", "limit": 3, "before": 1}
    )
    assert empty["result"]["publications"] == []


async def test_history_needs_a_subscription() -> None:
    pubsub = make()
    await pubsub.publish("chat:secret", "x")
    session, _ = await connected(pubsub)
    [reply] = await send(session, {"id": 2, "op": "history", "channel": "chat:secret"})
    assert reply["error"]["code"] == 110
    assert "x" not in str(reply)


async def test_history_arguments_are_checked() -> None:
    session, _ = await connected(make())
    await send(session, {"id": 2, "op": "subscribe", "channel": "chat:a"})
    for bad in ({"limit": 0}, {"limit": 1001}, {"limit": "5"}, {"before": 0}, {"before": 1.5}):
        [reply] = await send(session, {"id": 3, "op": "history", "channel": "chat:a", **bad})
        assert reply["error"]["code"] == 107, (bad, reply)
