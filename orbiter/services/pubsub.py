"""Channels on this node: who is subscribed, publishing, fan-out, history, keys.

:class:`PubSub` is the one delivery path. Every route that publishes (the
native protocol, the HTTP API, Orbited ``event``) ends in
:meth:`PubSub.publish`; every publication the broker delivers is encoded
once in :meth:`PubSub._fan_out` and queued on its channel. Once per
event-loop iteration (or, for a busy channel, after ``session.write_delay``)
a channel's queued publications go to every subscriber as one :class:`SharedBatch`,
without awaiting: a burst costs each subscriber one call, and each
transport frames the batch once for all of its connections.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Protocol

from orbiter.config import Config
from orbiter.engine.base import (
    Broker,
    HistoryPage,
    HistoryPolicy,
    PresenceStore,
)
from orbiter.model import JSON, ClientInfo, PresenceEvent, Publication, StreamPosition
from orbiter.protocol.keys import ConnectionKey
from orbiter.protocol.native import encode_presence, encode_publication
from orbiter.services.shared_batch import SharedBatch

BatchHandler = Callable[[SharedBatch], None]
#: Channels whose history policy :meth:`PubSub.policy` remembers.
_POLICY_MEMO = 65_536


class Subscriber(Protocol):
    """What a channel needs from whoever subscribes to it (a client session)."""

    @property
    def client_id(self) -> str: ...

    @property
    def user(self) -> str | None: ...

    @property
    def info(self) -> JSON:
        """What the app attached to this client, shown in presence."""

    def deliver(self, pub: Publication, message: bytes) -> None:
        """Take one publication, already encoded; must not block or await.

        A subscriber that also has ``deliver_batch(batch: SharedBatch)`` gets
        each batch in one call instead.
        """

    def deliver_presence(self, channel: str, message: bytes) -> None:
        """Take one encoded join/leave push; must not block or await."""


class _Channel:
    __slots__ = ("flushed_at", "messages", "name", "pubs", "ready", "subscribers")

    def __init__(self, name: str) -> None:
        self.name = name
        #: Each subscriber and the handler its batches go to.
        self.subscribers: dict[Subscriber, BatchHandler] = {}
        #: Resolved once the broker delivers this channel to the node.
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        #: Publications waiting for the next flush, and their encodings.
        self.pubs: list[Publication] = []
        self.messages: list[bytes] = []
        #: ``time.monotonic()`` when its last batch had been written (-inf: none yet).
        self.flushed_at = float("-inf")


def _batch_handler(sub: Subscriber) -> BatchHandler:
    handler: BatchHandler | None = getattr(sub, "deliver_batch", None)
    if handler is not None:
        return handler

    def one_by_one(batch: SharedBatch) -> None:
        for pub, message in zip(batch.pubs, batch.messages, strict=True):
            sub.deliver(pub, message)

    return one_by_one


class PubSub:
    def __init__(self, config: Config, broker: Broker, presence: PresenceStore) -> None:
        self._config = config
        self._broker = broker
        self._presence = presence
        self._channels: dict[str, _Channel] = {}
        self._write_delay = config.session.write_delay
        #: Each recent channel's history policy (the config does not change while running).
        self._policies: dict[str, HistoryPolicy] = {}
        #: Channels with publications waiting: for the end of this loop iteration, and
        #: (busy channels, see :meth:`_fan_out`) for ``write_delay`` (one timer for all).
        self._dirty: list[_Channel] = []
        self._delayed: list[_Channel] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        broker.set_handlers(self._fan_out, self._fan_out_presence)

    def policy(self, channel: str) -> HistoryPolicy:
        policy = self._policies.get(channel)
        if policy is None:
            rule = self._config.rule_for(channel)
            policy = HistoryPolicy(
                rule.history_size, rule.history_ttl, self._config.history_meta_ttl
            )
            if len(self._policies) >= _POLICY_MEMO:
                self._policies.clear()
            self._policies[channel] = policy
        return policy

    async def subscribe(self, sub: Subscriber, channel: str) -> None:
        """Deliver ``channel``'s publications to ``sub`` from now on."""
        entry = self._channels.get(channel)
        if entry is None:
            entry = self._channels[channel] = _Channel(channel)
            entry.subscribers[sub] = _batch_handler(sub)
            try:
                await self._broker.subscribe(channel)
            except BaseException as exc:
                if self._channels.get(channel) is entry:
                    del self._channels[channel]
                entry.ready.set_exception(exc)
                entry.ready.exception()  # retrieved here; waiters re-raise it
                raise
            entry.ready.set_result(None)
        else:
            entry.subscribers[sub] = _batch_handler(sub)
            if not entry.ready.done():
                await asyncio.shield(entry.ready)
        info = ClientInfo(sub.client_id, sub.user, sub.info)
        if await self._presence.add(channel, info) and self._config.rule_for(channel).presence:
            await self._broker.publish_presence(PresenceEvent(channel, True, info))

    async def unsubscribe(self, sub: Subscriber, channel: str) -> None:
        entry = self._channels.get(channel)
        if entry is None or sub not in entry.subscribers:
            return
        del entry.subscribers[sub]
        if not entry.subscribers:
            del self._channels[channel]
            if entry.ready.done() and entry.ready.exception() is None:
                await self._broker.unsubscribe(channel)
        left = await self._presence.remove(channel, sub.client_id)
        if left is not None and self._config.rule_for(channel).presence:
            await self._broker.publish_presence(PresenceEvent(channel, False, left))

    def publish(self, channel: str, data: JSON) -> Coroutine[Any, Any, Publication]:
        """Publish to ``channel`` (await the result): the broker's own coroutine, not one more."""
        return self._broker.publish(channel, data, self.policy(channel))

    async def event(self, keys: Iterable[ConnectionKey], data: JSON) -> list[Publication]:
        """Orbited's ``event(keys, message)``: publish to each key's channel."""
        return [await self.publish(key.channel, data) for key in keys]

    async def history(
        self, channel: str, since: StreamPosition | None = None, limit: int | None = None
    ) -> HistoryPage:
        return await self._broker.history(channel, since, self.policy(channel), limit)

    async def channels(self) -> dict[str, int]:
        return await self._presence.channels()

    async def presence(self, channel: str) -> dict[str, Any]:
        """Who is on ``channel``: one entry per user (however many tabs), and counts."""
        clients = await self._presence.clients(channel)
        users: dict[str, dict[str, Any]] = {}
        for client in clients:
            if client.user is not None:
                entry = users.setdefault(client.user, {"user": client.user, "clients": 0})
                entry["info"] = client.info
                entry["clients"] += 1
        return {"channel": channel, "clients": len(clients), "users": list(users.values())}

    def subscriber_count(self, channel: str) -> int:
        entry = self._channels.get(channel)
        return 0 if entry is None else len(entry.subscribers)

    @property
    def channel_count(self) -> int:
        """Channels with at least one subscriber on this node (``limits.max_channels``)."""
        return len(self._channels)

    def _fan_out(self, pub: Publication) -> None:
        """Queue a publication for its channel's next batch.

        The batch goes out at the end of this loop iteration, unless the
        channel is busy: one whose last batch was written less than
        ``2 * write_delay`` seconds ago waits ``write_delay`` for more
        publications to join its batch. Waiting pays only where publications come that often (a
        subscriber then gets several in one write); on a quiet channel it
        would only add latency, and bunch many channels' writes into one
        burst, which costs more per write than writes spread over the loop's
        iterations (``orbiter bench many-channels``: 29 CPU s per million
        publications with every channel waiting 5 ms, 20.5 flushed at once).
        """
        entry = self._channels.get(pub.channel)
        if entry is None:
            return
        if not entry.pubs:
            loop = self._loop
            if loop is None:  # asyncio.get_running_loop() costs a getpid() system call
                loop = self._loop = asyncio.get_running_loop()
            delay = self._write_delay
            if delay > 0 and time.monotonic() - entry.flushed_at < 2 * delay:
                if not self._delayed:
                    loop.call_later(delay, self._flush_delayed)
                self._delayed.append(entry)
            else:
                if not self._dirty:
                    loop.call_soon(self._flush_dirty)
                self._dirty.append(entry)
        entry.pubs.append(pub)
        entry.messages.append(encode_publication(pub))

    def _flush_dirty(self) -> None:
        dirty, self._dirty = self._dirty, []
        self._flush_all(dirty)

    def _flush_delayed(self) -> None:
        delayed, self._delayed = self._delayed, []
        self._flush_all(delayed)

    def _flush_all(self, entries: list[_Channel]) -> None:
        for entry in entries:
            self._flush(entry)
            entry.flushed_at = time.monotonic()

    def _flush(self, entry: _Channel) -> None:
        """Hand a channel's queued publications to every subscriber, as one shared batch."""
        if not entry.pubs:
            return
        batch = SharedBatch(entry.name, entry.pubs, entry.messages)
        entry.pubs, entry.messages = [], []
        # A handler never unsubscribes synchronously (closing only marks the session).
        for handler in entry.subscribers.values():
            handler(batch)

    def _fan_out_presence(self, event: PresenceEvent) -> None:
        entry = self._channels.get(event.channel)
        if entry is None:
            return
        self._flush(entry)  # publications before the join/leave stay before it
        message = encode_presence(event)
        for sub in entry.subscribers:
            sub.deliver_presence(event.channel, message)
