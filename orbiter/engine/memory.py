"""The embedded engine: channel streams and presence in this process's memory.

Publications are delivered synchronously to the node's handler, so within
one process the order of delivery is the order of offsets.

Only a publication creates a stream: reading or subscribing to a channel
that was never published stores nothing, so readers cannot fill
``limits.max_channels``. Such a channel reads as offset 0 of the broker's
*void epoch*, and the stream a first publication creates takes that epoch,
so a reader's position stays valid. The void epoch changes whenever a stream
is forgotten (and on restart), so a position read before a forgotten
stream is never taken for one in its successor.

History is bounded per channel (size and age) and over the node
(``history.max_bytes``): past the node's budget the oldest publications go
first, whatever their channel, and a client asking to recover past them is
told it cannot. A stream (epoch, offset) is forgotten once it has no
history, no subscriber on this node, and no activity for ``meta_ttl``.

Presence entries expire as the engine contract says
(:class:`~orbiter.engine.base.PresenceStore`); all of this store's entries
are its own node's, so one timestamp refreshed by one timer is their refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import secrets
import time
from collections import deque
from collections.abc import Callable

import orjson

from orbiter.engine.base import (
    HistoryPage,
    HistoryPolicy,
    PresenceStore,
    TooManyStreams,
)
from orbiter.engine.local import LocalBroker
from orbiter.model import JSON, ClientInfo, Publication, StreamPosition

#: Bytes a kept publication costs besides its data (the object, its offset, time
#: and places in two queues), so that a flood of tiny ones counts too.
PUBLICATION_OVERHEAD = 128
#: An ASCII string's two quotes and :data:`PUBLICATION_OVERHEAD`, added in one step.
_QUOTED_OVERHEAD = PUBLICATION_OVERHEAD + 2


def new_epoch() -> str:
    return secrets.token_hex(4)


def kept_size(data: JSON, tags: dict[str, str] | None) -> int:
    """What keeping a publication of ``data`` counts against ``history.max_bytes``.

    The data's JSON length (a string's without escapes) plus
    :data:`PUBLICATION_OVERHEAD` and the tags' characters.
    """
    if type(data) is str and data.isascii():
        size = len(data) + _QUOTED_OVERHEAD
    else:
        size = len(orjson.dumps(data)) + PUBLICATION_OVERHEAD
    if tags:
        size += sum(len(name) + len(value) for name, value in tags.items())
    return size


class _Stream:
    __slots__ = ("epoch", "offset", "policy", "publications", "touched")

    def __init__(self, epoch: str, policy: HistoryPolicy, now: float) -> None:
        self.epoch = epoch
        self.offset = 0
        #: The newest publications kept, oldest first.
        self.publications: deque[Publication] = deque()
        self.touched = now
        #: The policy last used on this stream, for the periodic sweep.
        self.policy = policy


class MemoryBroker(LocalBroker):
    """Streams and delivery for a single orbiter process."""

    def __init__(
        self,
        *,
        sweep_interval: float = 5.0,
        max_streams: int | None = None,
        max_history_bytes: int | None = None,
    ) -> None:
        super().__init__()
        self._streams: dict[str, _Stream] = {}
        #: At most this many streams (None: no bound); past it new ones raise TooManyStreams.
        self._max_streams = max_streams
        self._full_sweep_at = 0.0
        #: At most this many bytes of history (:func:`kept_size`) over all streams
        #: (infinite: no bound, one comparison all the same).
        self._max_history_bytes: float = (
            math.inf if max_history_bytes is None else max_history_bytes
        )
        #: Every publication kept, and those dropped from their stream since the
        #: last compaction, in the order published (so the oldest goes first).
        self._kept: deque[Publication] = deque()
        #: Bytes of the publications in ``_kept`` (the one sum a publication adds to), and
        #: of those among them no stream keeps any more; history holds the difference.
        self._kept_bytes = 0
        self._dead_bytes = 0
        self._node_epoch = new_epoch()
        self._forgets = 0
        #: The epoch of a channel with no stream (see the module docstring).
        self.void_epoch = self._node_epoch
        self._sweep_interval = sweep_interval
        self._sweeper: asyncio.Task[None] | None = None

    def stats(self) -> dict[str, int]:
        history_bytes = self._kept_bytes - self._dead_bytes
        return {"channels": len(self._streams), "history_bytes": history_bytes}

    async def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def publish(
        self, channel: str, data: JSON, policy: HistoryPolicy, tags: dict[str, str] | None = None
    ) -> Publication:
        return self.publish_at_once(channel, data, policy, tags)

    def publish_at_once(
        self, channel: str, data: JSON, policy: HistoryPolicy, tags: dict[str, str] | None = None
    ) -> Publication:
        now = time.time()
        stream = self._streams.get(channel)
        if stream is None:
            stream = self._new_stream(channel, policy, now)
        else:
            stream.touched = now
            stream.policy = policy
        offset = stream.offset = stream.offset + 1
        if policy.size:
            if type(data) is str and tags is None and data.isascii():
                size = len(data) + _QUOTED_OVERHEAD  # kept_size's rule, for its common case
            else:
                size = kept_size(data, tags)
            pub = Publication(channel, offset, stream.epoch, data, now, tags, size)
            pubs = stream.publications
            pubs.append(pub)
            if len(pubs) > policy.size or pubs[0].time < now - policy.ttl:
                self._trim(stream, now)
            self._kept.append(pub)
            kept = self._kept_bytes = self._kept_bytes + size
            if kept > self._max_history_bytes:
                self._make_room(self._max_history_bytes)
        else:
            pub = Publication(channel, offset, stream.epoch, data, now, tags)
            if stream.publications:  # kept under an earlier policy
                self._trim(stream, now)
        if self._on_publication is not None and channel in self._subscribed:
            self._on_publication(pub)
        return pub

    async def history(
        self,
        channel: str,
        since: StreamPosition | None,
        policy: HistoryPolicy,
        limit: int | None = None,
    ) -> HistoryPage:
        stream = self._streams.get(channel)
        if stream is None:  # never published (or forgotten): nothing to keep for a reader
            position = StreamPosition(0, self.void_epoch)
            return HistoryPage(position, [], since is None or since == position)
        self._read(stream, policy)
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

    async def history_before(
        self, channel: str, before: int, policy: HistoryPolicy, limit: int
    ) -> HistoryPage:
        stream = self._streams.get(channel)
        if stream is None:
            return HistoryPage(StreamPosition(0, self.void_epoch), [], True)
        self._read(stream, policy)
        position = StreamPosition(stream.offset, stream.epoch)
        pubs = stream.publications
        if not pubs or limit <= 0:
            return HistoryPage(position, [], True)
        end = max(0, min(len(pubs), before - pubs[0].offset))
        page = list(itertools.islice(pubs, max(0, end - limit), end))
        return HistoryPage(position, page, True)

    def _read(self, stream: _Stream, policy: HistoryPolicy) -> None:
        """A reader came: the stream is active, kept by ``policy``, and trimmed to it."""
        now = time.time()
        stream.touched = now
        stream.policy = policy
        self._trim(stream, now)

    # ------------------------------------------------------------ streams

    def _new_stream(self, channel: str, policy: HistoryPolicy, now: float) -> _Stream:
        if self._max_streams is not None and len(self._streams) >= self._max_streams:
            if now >= self._full_sweep_at + 1.0:  # forget idle streams, at most once a second
                self._full_sweep_at = now
                self.sweep(now)
            if len(self._streams) >= self._max_streams:
                raise TooManyStreams(
                    f"the server keeps {self._max_streams} channels (limits.max_channels); "
                    f"cannot open {channel!r}"
                )
        stream = self._streams[channel] = _Stream(self.void_epoch, policy, now)
        return stream

    def _forget(self, channels: list[str]) -> None:
        for channel in channels:
            del self._streams[channel]
        if channels:
            # Positions read from the void epoch before this point may name one of
            # these streams: a stream created from now on must not honour them.
            self._forgets += 1
            self.void_epoch = f"{self._node_epoch}-{self._forgets}"

    # ------------------------------------------------------------ history bytes

    def _trim(self, stream: _Stream, now: float) -> None:
        """Drop the stream's publications past its policy's size or age."""
        pubs = stream.publications
        size, oldest_kept = stream.policy.size, now - stream.policy.ttl
        while pubs and (len(pubs) > size or pubs[0].time < oldest_kept):
            # Its bytes count until it reaches the front of ``_kept`` (or a compaction).
            self._dead_bytes += pubs.popleft().size

    def _is_kept(self, pub: Publication) -> bool:
        stream = self._streams.get(pub.channel)
        if stream is None or stream.epoch != pub.epoch or not stream.publications:
            return False
        return stream.publications[0].offset <= pub.offset

    def _make_room(self, limit: float) -> None:
        """Drop the oldest publications until history fits in ``limit`` bytes."""
        while self._kept_bytes > limit and self._kept:
            if 2 * self._dead_bytes >= self._kept_bytes:
                self._compact()
                continue
            pub = self._kept.popleft()
            self._kept_bytes -= pub.size
            if not self._is_kept(pub):
                self._dead_bytes -= pub.size
                continue
            stream = self._streams[pub.channel]
            stream.publications.popleft()  # the oldest kept anywhere is its stream's oldest

    def _compact(self) -> None:
        """Forget the publications no stream keeps any more (half of ``_kept`` or more)."""
        self._kept = deque(pub for pub in self._kept if self._is_kept(pub))
        self._kept_bytes -= self._dead_bytes
        self._dead_bytes = 0

    # ------------------------------------------------------------ upkeep

    def sweep(self, now: float | None = None) -> None:
        """Drop expired history and forget idle streams; runs periodically."""
        now = time.time() if now is None else now
        forget = []
        for channel, stream in self._streams.items():
            pubs = stream.publications
            if pubs and (len(pubs) > stream.policy.size or pubs[0].time < now - stream.policy.ttl):
                self._trim(stream, now)
            if (
                not pubs
                and channel not in self._subscribed
                and stream.touched < now - stream.policy.meta_ttl
            ):
                forget.append(channel)
        self._forget(forget)
        if self._dead_bytes and 2 * self._dead_bytes >= self._kept_bytes:
            self._compact()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            self.sweep()


#: Seconds a presence entry lives unless refreshed (the Redis engine's default too).
PRESENCE_TTL = 30.0


class MemoryPresenceStore(PresenceStore):
    """Presence for a single orbiter process.

    Every entry is refreshed at once, every ``ttl / 3`` seconds, by one timer
    that runs from the first :meth:`add` until :meth:`close` (no work per entry
    or per message); once it stops, the entries expire together ``ttl`` after
    the last refresh. ``clock``: monotonic seconds, the event loop's in production.
    """

    def __init__(
        self, ttl: float = PRESENCE_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._channels: dict[str, dict[str, ClientInfo]] = {}
        #: channel -> user -> number of that user's clients on the channel
        self._users: dict[str, dict[str, int]] = {}
        self.ttl = ttl
        self._clock = clock
        #: When every entry was last refreshed.
        self._refreshed = clock()
        self._refresher: asyncio.TimerHandle | None = None

    def _refresh(self) -> None:
        self._refreshed = self._clock()
        self._refresher = asyncio.get_running_loop().call_later(self.ttl / 3, self._refresh)

    def _expire(self) -> None:
        """Forget every entry if none was refreshed within the TTL."""
        if self._channels and self._clock() - self._refreshed >= self.ttl:
            self._channels.clear()
            self._users.clear()

    async def close(self) -> None:
        """Stop refreshing: the entries expire ``ttl`` after the last refresh."""
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None

    async def add(self, channel: str, info: ClientInfo) -> bool:
        self._expire()
        if self._refresher is None:
            self._refresh()
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
        self._expire()
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
        self._expire()
        return list(self._channels.get(channel, {}).values())

    async def channels(self) -> dict[str, int]:
        self._expire()
        return {channel: len(clients) for channel, clients in self._channels.items()}
