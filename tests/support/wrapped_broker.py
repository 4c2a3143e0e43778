"""A :class:`~orbiter.engine.base.Broker` that hands every call to another one.

Tests that need an engine with one behaviour changed (a history read that
waits, publications racing it, a publish that cannot be done at once) subclass
:class:`WrappedBroker` and override that method, calling ``super()`` for the
real work: the memory engine itself may be compiled with mypyc, and a compiled
class cannot be subclassed by interpreted code (``setup.py``).
"""

from __future__ import annotations

import asyncio

from orbiter.engine.base import (
    Answerer,
    Broker,
    HistoryPage,
    HistoryPolicy,
    PresenceHandler,
    PublicationHandler,
    Survey,
)
from orbiter.engine.memory import MemoryBroker
from orbiter.model import JSON, PresenceEvent, Publication, StreamPosition


class WrappedBroker(Broker):
    """Every :class:`Broker` method, handed to ``inner`` (a new memory engine by default);
    ``clustered`` is the class's own (False, unless a subclass says True)."""

    def __init__(self, inner: Broker | None = None) -> None:
        self.inner = MemoryBroker() if inner is None else inner

    def set_handlers(self, publication: PublicationHandler, presence: PresenceHandler) -> None:
        self.inner.set_handlers(publication, presence)

    def set_answerer(self, kind: str, answerer: Answerer) -> None:
        self.inner.set_answerer(kind, answerer)

    def answer(self, kind: str, argument: JSON) -> JSON:
        return self.inner.answer(kind, argument)

    async def survey(self, kind: str, argument: JSON) -> Survey:
        return await self.inner.survey(kind, argument)

    async def subscribed(self, channels: list[str]) -> set[str]:
        return await self.inner.subscribed(channels)

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def check(self) -> str | None:
        return await self.inner.check()

    async def subscribe(self, channel: str) -> None:
        await self.inner.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        await self.inner.unsubscribe(channel)

    async def publish(
        self, channel: str, data: JSON, policy: HistoryPolicy, tags: dict[str, str] | None = None
    ) -> Publication:
        return await self.inner.publish(channel, data, policy, tags)

    def publish_at_once(
        self, channel: str, data: JSON, policy: HistoryPolicy, tags: dict[str, str] | None = None
    ) -> Publication | None:
        return self.inner.publish_at_once(channel, data, policy, tags)

    def publish_soon(
        self, channel: str, data: JSON, policy: HistoryPolicy, tags: dict[str, str] | None = None
    ) -> asyncio.Future[Publication] | None:
        return self.inner.publish_soon(channel, data, policy, tags)

    def stats(self) -> dict[str, int]:
        return self.inner.stats()

    async def publish_presence(self, event: PresenceEvent) -> None:
        await self.inner.publish_presence(event)

    async def history(
        self,
        channel: str,
        since: StreamPosition | None,
        policy: HistoryPolicy,
        limit: int | None = None,
    ) -> HistoryPage:
        return await self.inner.history(channel, since, policy, limit)

    async def history_before(
        self, channel: str, before: int, policy: HistoryPolicy, limit: int
    ) -> HistoryPage:
        return await self.inner.history_before(channel, before, policy, limit)
