"""The embedded engine: channel streams and presence in this process's memory.

Publications are delivered synchronously to the node's handler, so within
one process the order of delivery is the order of offsets. History is
bounded per channel by size and age; a channel's stream (its epoch and
offset) is forgotten once it has no history, no subscriber on this node,
and no publication for ``meta_ttl`` seconds. A forgotten stream, like one
lost to a restart, comes back with a new epoch, so clients can tell that
they cannot recover.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import deque

from orbiter.engine.base import (
    Broker,
    HistoryPage,
    HistoryPolicy,
    PresenceHandler,
    PresenceStore,
    PublicationHandler,
    TooManyStreams,
)
from orbiter.model import JSON, ClientInfo, PresenceEvent, Publication, StreamPosition


def new_epoch() -> str:
    return secrets.token_hex(4)


class _Stream:
    __slots__ = ("epoch", "offset", "policy", "publications", "touched")

    def __init__(self, policy: HistoryPolicy, now: float) -> None:
        self.epoch = new_epoch()
        self.offset = 0
        #: The newest ``policy.size`` publications (an append past it drops the oldest).
        self.publications: deque[Publication] = deque(maxlen=policy.size)
        self.touched = now
        #: The policy last used on this stream, for the periodic sweep.
        self.policy = policy

    def adopt(self, policy: HistoryPolicy) -> None:
        """Keep history by ``policy`` from now on (the newest publications stay)."""
        self.policy = policy
        if self.publications.maxlen != policy.size:
            self.publications = deque(self.publications, maxlen=policy.size)

    def expire(self, now: float) -> None:
        pubs = self.publications
        while pubs and pubs[0].time < now - self.policy.ttl:
            pubs.popleft()


class MemoryBroker(Broker):
    """Streams and delivery for a single orbiter process."""

    def __init__(self, *, sweep_interval: float = 5.0, max_streams: int | None = None) -> None:
        self._streams: dict[str, _Stream] = {}
        #: At most this many streams (None: no bound); past it new ones raise TooManyStreams.
        self._max_streams = max_streams
        self._full_sweep_at = 0.0
        self._subscribed: set[str] = set()
        self._on_publication: PublicationHandler | None = None
        self._on_presence: PresenceHandler | None = None
        self._sweep_interval = sweep_interval
        self._sweeper: asyncio.Task[None] | None = None

    def set_handlers(self, publication: PublicationHandler, presence: PresenceHandler) -> None:
        self._on_publication = publication
        self._on_presence = presence

    async def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def subscribe(self, channel: str) -> None:
        self._subscribed.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._subscribed.discard(channel)

    async def publish(
        self, channel: str, data: JSON, policy: HistoryPolicy, tags: dict[str, str] | None = None
    ) -> Publication:
        return self.publish_at_once(channel, data, policy, tags)

    def publish_at_once(
        self, channel: str, data: JSON, policy: HistoryPolicy, tags: dict[str, str] | None = None
    ) -> Publication:
        now = time.time()
        stream = self._streams.get(channel)
        if stream is None or stream.policy is not policy:
            stream = self._stream(channel, policy, now)
        else:
            stream.touched = now
        offset = stream.offset = stream.offset + 1
        pub = Publication(channel, offset, stream.epoch, data, now, tags)
        if policy.size:
            pubs = stream.publications
            pubs.append(pub)  # the oldest past policy.size falls out
            if pubs[0].time < now - policy.ttl:
                stream.expire(now)
        if self._on_publication is not None and channel in self._subscribed:
            self._on_publication(pub)
        return pub

    async def publish_presence(self, event: PresenceEvent) -> None:
        if self._on_presence is not None and event.channel in self._subscribed:
            self._on_presence(event)

    async def history(
        self,
        channel: str,
        since: StreamPosition | None,
        policy: HistoryPolicy,
        limit: int | None = None,
    ) -> HistoryPage:
        now = time.time()
        stream = self._stream(channel, policy, now)
        stream.expire(now)
        position = StreamPosition(stream.offset, stream.epoch)
        pubs = stream.publications
        if since is None:
            count = len(pubs) if limit is None else max(0, min(limit, len(pubs)))
            return HistoryPage(position, list(pubs)[len(pubs) - count :], True)
        if since.epoch != stream.epoch or since.offset > stream.offset:
            return HistoryPage(position, [], False)
        oldest = pubs[0].offset if pubs else stream.offset + 1
        start = max(0, since.offset + 1 - oldest)
        missed = list(pubs)[start:]
        return HistoryPage(position, missed, oldest <= since.offset + 1)

    def _stream(self, channel: str, policy: HistoryPolicy, now: float) -> _Stream:
        stream = self._streams.get(channel)
        if stream is None:
            if self._max_streams is not None and len(self._streams) >= self._max_streams:
                if now >= self._full_sweep_at + 1.0:  # forget idle streams, at most once a second
                    self._full_sweep_at = now
                    self.sweep(now)
                if len(self._streams) >= self._max_streams:
                    raise TooManyStreams(
                        f"the server keeps {self._max_streams} channels (limits.max_channels); "
                        f"cannot open {channel!r}"
                    )
            stream = self._streams[channel] = _Stream(policy, now)
        stream.touched = now
        if stream.policy is not policy:
            stream.adopt(policy)
        return stream

    def sweep(self, now: float | None = None) -> None:
        """Drop expired history and forget idle streams; runs periodically."""
        now = time.time() if now is None else now
        forget = []
        for channel, stream in self._streams.items():
            stream.expire(now)
            if (
                not stream.publications
                and channel not in self._subscribed
                and stream.touched < now - stream.policy.meta_ttl
            ):
                forget.append(channel)
        for channel in forget:
            del self._streams[channel]

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            self.sweep()


class MemoryPresenceStore(PresenceStore):
    """Presence for a single orbiter process."""

    def __init__(self) -> None:
        self._channels: dict[str, dict[str, ClientInfo]] = {}
        #: channel -> user -> number of that user's clients on the channel
        self._users: dict[str, dict[str, int]] = {}

    async def add(self, channel: str, info: ClientInfo) -> bool:
        clients = self._channels.setdefault(channel, {})
        if info.client in clients:
            clients[info.client] = info
            return False
        clients[info.client] = info
        if info.user is None:
            return False
        users = self._users.setdefault(channel, {})
        users[info.user] = users.get(info.user, 0) + 1
        return users[info.user] == 1

    async def remove(self, channel: str, client: str) -> ClientInfo | None:
        clients = self._channels.get(channel)
        info = None if clients is None else clients.pop(client, None)
        if clients is not None and not clients:
            del self._channels[channel]
        if info is None or info.user is None:
            return None
        users = self._users[channel]
        users[info.user] -= 1
        if users[info.user]:
            return None
        del users[info.user]
        if not users:
            del self._users[channel]
        return info

    async def clients(self, channel: str) -> list[ClientInfo]:
        return list(self._channels.get(channel, {}).values())

    async def channels(self) -> dict[str, int]:
        return {channel: len(clients) for channel, clients in self._channels.items()}
