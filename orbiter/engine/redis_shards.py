"""Channels sharded over several Redis servers: each channel lives on one of them.

``[engine] url = "redis://a:6379/0,redis://b:6379/0"`` (or ``--engine`` with
the same list) spreads channels over the Redis servers by a stable hash of
the channel's name (CRC-32, the same on every node): a channel's stream,
history, presence and live delivery are all on its shard, so every
guarantee of :class:`RedisBroker` holds per channel, and a publication
still costs one script on one Redis. The node list and the surveys use the
first shard. Every node must list the same URLs in the same order.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Iterable

from orbiter.config.storage import REDIS_SCHEMES
from orbiter.engine.base import (
    Answerer,
    Broker,
    EngineUnavailable,
    HistoryPage,
    HistoryPolicy,
    Kept,
    PresenceHandler,
    PresenceStore,
    PublicationHandler,
    Survey,
)
from orbiter.engine.redis import RedisBroker, RedisPresenceStore
from orbiter.engine.redis_cluster_mode import (
    ClusterRedisBroker,
    ClusterRedisPresenceStore,
    is_cluster_url,
)
from orbiter.engine.redis_wait import DEFAULT_WAIT, IterationWait
from orbiter.model import JSON, ClientInfo, PresenceEvent, Publication, StreamPosition


def shard_urls(url: str) -> list[str]:
    """The Redis URLs of ``engine.url``: one, or several separated by commas;
    :class:`EngineUnavailable` naming one that is not a Redis URL."""
    urls = [part.strip() for part in url.split(",")]
    for part in urls:
        if not part.startswith(REDIS_SCHEMES):
            raise EngineUnavailable(f"{part!r} is not a Redis URL ({', '.join(REDIS_SCHEMES)})")
    return urls


def shard_of(channel: str, count: int) -> int:
    """The index of ``channel``'s shard among ``count`` (stable across nodes and restarts)."""
    return zlib.crc32(channel.encode()) % count


class ShardedRedisBroker(Broker):
    """A :class:`RedisBroker` per URL; each channel goes to one of them."""

    clustered = True

    def __init__(
        self, urls: list[str], *, prefix: str = "orbiter", commit_wait: float = DEFAULT_WAIT
    ) -> None:
        """``commit_wait``: see :class:`RedisBroker`; one wait per loop iteration in all,
        whichever shard's flush makes it."""
        wait = IterationWait(commit_wait)
        self.shards = [
            RedisBroker(url, prefix=prefix, join=index == 0, wait=wait)
            for index, url in enumerate(urls)
        ]

    def _shard(self, channel: str) -> RedisBroker:
        return self.shards[shard_of(channel, len(self.shards))]

    def set_handlers(self, publication: PublicationHandler, presence: PresenceHandler) -> None:
        super().set_handlers(publication, presence)
        for shard in self.shards:
            shard.set_handlers(publication, presence)

    def set_answerer(self, kind: str, answerer: Answerer) -> None:
        super().set_answerer(kind, answerer)
        self.shards[0].set_answerer(kind, answerer)

    async def start(self) -> None:
        started: list[RedisBroker] = []
        try:
            for shard in self.shards:
                await shard.start()
                started.append(shard)
        except BaseException:
            for shard in started:
                with contextlib.suppress(Exception):
                    await shard.close()
            raise

    async def close(self) -> None:
        for shard in self.shards:
            await shard.close()

    async def check(self) -> str | None:
        for shard in self.shards:
            why = await shard.check()
            if why is not None:
                return f"shard {shard.url.split('@')[-1]}: {why}" if len(self.shards) > 1 else why
        return None

    def stats(self) -> dict[str, int]:
        return {
            "engine_up": int(all(shard.connected for shard in self.shards)),
            "engine_failures": sum(shard.failures for shard in self.shards),
        }

    async def subscribe(self, channel: str) -> None:
        await self._shard(channel).subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        await self._shard(channel).unsubscribe(channel)

    async def publish(
        self, channel: str, data: JSON, policy: HistoryPolicy, tags: dict[str, str] | None = None
    ) -> Publication:
        return await self._shard(channel).publish(channel, data, policy, tags)

    def publish_soon(
        self, channel: str, data: JSON, policy: HistoryPolicy, tags: dict[str, str] | None = None
    ) -> asyncio.Future[Publication]:
        return self._shard(channel).publish_soon(channel, data, policy, tags)

    def publish_then(
        self,
        channel: str,
        data: JSON,
        policy: HistoryPolicy,
        tags: dict[str, str] | None,
        done: Kept,
    ) -> bool:
        return self._shard(channel).publish_then(channel, data, policy, tags, done)

    def flush(self) -> None:
        """Each shard sends what a read queued for it in that read's iteration."""
        for shard in self.shards:
            shard.flush()

    async def publish_presence(self, event: PresenceEvent) -> None:
        await self._shard(event.channel).publish_presence(event)

    async def history(
        self,
        channel: str,
        since: StreamPosition | None,
        policy: HistoryPolicy,
        limit: int | None = None,
    ) -> HistoryPage:
        return await self._shard(channel).history(channel, since, policy, limit)

    async def history_before(
        self, channel: str, before: int, policy: HistoryPolicy, limit: int
    ) -> HistoryPage:
        return await self._shard(channel).history_before(channel, before, policy, limit)

    async def survey(self, kind: str, argument: JSON) -> Survey:
        return await self.shards[0].survey(kind, argument)

    async def subscribed(self, channels: list[str]) -> set[str]:
        found: set[str] = set()
        for index, group in _grouped(channels, len(self.shards)).items():
            found |= await self.shards[index].subscribed(group)
        return found


class ShardedRedisPresenceStore(PresenceStore):
    """A :class:`RedisPresenceStore` per URL; a channel's presence is on its shard."""

    def __init__(self, urls: list[str], *, prefix: str = "orbiter") -> None:
        self.shards = [RedisPresenceStore(url, prefix=prefix) for url in urls]

    def _shard(self, channel: str) -> RedisPresenceStore:
        return self.shards[shard_of(channel, len(self.shards))]

    async def add(self, channel: str, info: ClientInfo) -> bool:
        return await self._shard(channel).add(channel, info)

    async def remove(self, channel: str, client: str) -> ClientInfo | None:
        return await self._shard(channel).remove(channel, client)

    async def clients(self, channel: str) -> list[ClientInfo]:
        return await self._shard(channel).clients(channel)

    async def channels(self) -> dict[str, int]:
        merged: dict[str, int] = {}
        for shard in self.shards:
            merged.update(await shard.channels())
        return merged

    async def close(self) -> None:
        for shard in self.shards:
            await shard.close()


def _grouped(channels: Iterable[str], count: int) -> dict[int, list[str]]:
    groups: dict[int, list[str]] = {}
    for channel in channels:
        groups.setdefault(shard_of(channel, count), []).append(channel)
    return groups


def redis_broker(url: str, *, prefix: str = "orbiter", commit_wait: float = DEFAULT_WAIT) -> Broker:
    """The broker of ``engine.url``: one Redis, shards over several (comma-separated), or a
    Redis Cluster (``engine/redis_cluster_mode.py``); ``commit_wait``: see
    :class:`RedisBroker`."""
    if is_cluster_url(url):
        return ClusterRedisBroker(url, prefix=prefix, commit_wait=commit_wait)
    urls = shard_urls(url)
    if len(urls) == 1:
        return RedisBroker(urls[0], prefix=prefix, commit_wait=commit_wait)
    return ShardedRedisBroker(urls, prefix=prefix, commit_wait=commit_wait)


def redis_presence(url: str, *, prefix: str = "orbiter") -> PresenceStore:
    """The presence store of ``engine.url`` (sharded as :func:`redis_broker` is)."""
    if is_cluster_url(url):
        return ClusterRedisPresenceStore(url, prefix=prefix)
    urls = shard_urls(url)
    if len(urls) == 1:
        return RedisPresenceStore(urls[0], prefix=prefix)
    return ShardedRedisPresenceStore(urls, prefix=prefix)
