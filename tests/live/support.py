"""A native session with live elements, against a real PubSub and memory engine."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import orjson

from orbiter.config.live import ElementMount, LiveSettings
from orbiter.config.settings import Config
from orbiter.engine.memory import MemoryBroker, MemoryPresenceStore
from orbiter.services.live.host import LiveHost
from orbiter.services.pubsub import PubSub
from orbiter.session.session import ClientSession

MOUNTS = (
    ElementMount("/sample", "tests.live.sample:make"),
    ElementMount("/narrower", "tests.live.sample:make_narrower"),
    ElementMount("/broken", "tests.live.sample:not_an_element"),
    ElementMount("/spy", "tests.live.sample:make_spy"),
)


def live_config(**settings: Any) -> Config:
    """Live settings for the tests: no grace period unless asked (detached at once)."""
    settings.setdefault("grace_period", 0.0)
    return Config(live=replace(LiveSettings(mounts=MOUNTS), **settings))


async def drain(session: ClientSession) -> list[dict[str, Any]]:
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    items, session.outbox._items, session.outbox._size = session.outbox._items, [], 0
    return [orjson.loads(item) for item in items]


async def send(session: ClientSession, *commands: dict[str, Any]) -> list[dict[str, Any]]:
    await session.receive(b"\n".join(orjson.dumps(c) for c in commands))
    return await drain(session)


async def live_session(
    config: Config | None = None, host: LiveHost | None = None, **identity: Any
) -> ClientSession:
    """A connected session; sessions given one ``host`` share its mounts and parked elements."""
    config = config or live_config()
    pubsub = PubSub(config, MemoryBroker(), MemoryPresenceStore())
    host = host if host is not None else LiveHost(config.live)
    session = ClientSession(pubsub, config, peer="test", live=host)
    [reply] = await send(session, {"id": 1, "op": "connect", **identity})
    assert "result" in reply, reply
    return session


async def attach(session: ClientSession, mount: str = "/sample", id_: int = 2) -> int:
    replies = await send(session, {"id": id_, "op": "attach", "mount": mount})
    reply = next(r for r in replies if r.get("id") == id_)
    assert "result" in reply, reply
    return int(reply["result"]["element"])


async def call(
    session: ClientSession, element: int, method: Any, *args: Any, id_: int = 10
) -> dict[str, Any]:
    """Call and wait (bounded) for the reply with ``id_``."""
    await session.receive(
        orjson.dumps({"id": id_, "op": "call", "element": element, "method": method, "args": args})
    )
    for _ in range(200):
        for message in await drain(session):
            if message.get("id") == id_:
                return message
        await asyncio.sleep(0.005)
    raise AssertionError(f"no reply to call {id_}")
