"""The Redis engine on a Redis Cluster (``redis+cluster://host:port``), with sharded pub/sub.

Everything :class:`RedisBroker` keeps per channel stays true, because every
key of one channel is in one hash slot: its keys carry a hash tag (``{t}``,
a short string chosen once per slot, the same on every node) for the slot
of the channel's name, so the publish script runs on the channel's master,
whose ``SPUBLISH`` sends the publication to that shard's subscribers only
(``PUBLISH`` would cross the whole cluster bus). The void epoch a script may
read is kept once per slot, under the same tag.

**Delivery.** This node holds one pub/sub connection per master that owns
a channel it is subscribed to (``SSUBSCRIBE``, one per channel, never per
connection), plus one plain ``SUBSCRIBE`` connection for the node list's
channels (``engine/redis_cluster.py``: their ``PUBLISH`` reaches every
master). Each connection reconnects with backoff; after a failure, or when
Redis says a slot moved (a ``MOVED`` answer, or ``SUNSUBSCRIBE`` sent by the
server), the slot map is read again and the channels go to their master,
catching up from history as after any reconnect.

**Commands** go through :class:`~orbiter.engine.redis_cluster_client.ClusterClient`
(redis-py's ``RedisCluster``, which follows ``MOVED`` and ``ASK``, with the
engine's rules for where a command goes and when it is sent again).
**Publications** go as the single mode's do (``engine/redis_publishing.py``:
one script call per pipeline, answered in the I/O callback), on one link per
master, one call per slot (:class:`MasterLinks`), following ``MOVED``,
``ASK``, ``TRYAGAIN`` and ``CLUSTERDOWN``; they are never sent again after a
connection error, so a publish to a master that is down fails
(:class:`PublishFailed`) and only the publications of its slots do.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import (
    RedisClusterException,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
)

from orbiter.config.storage import REDIS_CLUSTER_SCHEMES
from orbiter.engine.base import EngineUnavailable
from orbiter.engine.redis import (
    _PURGE,
    PING_TIMEOUT,
    RedisBroker,
    RedisKeys,
    RedisPresenceStore,
    log,
)
from orbiter.engine.redis_cluster_client import (
    ATTEMPTS,
    FIRST_BACKOFF,
    cluster_client,
    node_client,
)
from orbiter.engine.redis_publishing import (
    _SPUBLISH_MANY,
    PUBLISH_MANY_MAX,
    Call,
    Route,
    _Queued,
)
from orbiter.engine.redis_wire import send_on
from orbiter.model import PresenceEvent
from orbiter.tasks import stop

#: Hash slots of a Redis Cluster.
SLOTS = 16384


def is_cluster_url(url: str) -> bool:
    """``url`` names a Redis Cluster (``redis+cluster://``)."""
    return url.strip().startswith(REDIS_CLUSTER_SCHEMES)


@functools.cache
def slot_tags() -> tuple[str, ...]:
    """A short hash tag for each slot (hex numbers, the first found for it)."""
    tags = [""] * SLOTS
    missing, number = SLOTS, 0
    while missing:
        tag = format(number, "x")
        slot = key_slot(tag.encode())
        if not tags[slot]:
            tags[slot] = tag
            missing -= 1
        number += 1
    return tuple(tags)


@functools.lru_cache(maxsize=65536)
def tag_of(channel: str) -> str:
    """The hash tag of ``channel``'s keys: the tag of the slot its name hashes to."""
    return slot_tags()[key_slot(channel.encode())]


@dataclass(frozen=True, slots=True)
class ClusterKeys(RedisKeys):
    """:class:`RedisKeys` with every key of a channel in its slot (``{tag}`` before the name)."""

    def meta(self, channel: str) -> str:
        return f"{self.prefix}:meta:{{{tag_of(channel)}}}{channel}"

    def history(self, channel: str) -> str:
        return f"{self.prefix}:history:{{{tag_of(channel)}}}{channel}"

    def pubsub(self, channel: str) -> str:
        return f"{self.prefix}:ch:{{{tag_of(channel)}}}{channel}"

    def void_of(self, channel: str) -> str:
        return f"{self.prefix}:void:{{{tag_of(channel)}}}"


class _ShardLink:
    """The pub/sub connection to one master, and the shard channels it carries."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self.names: set[bytes] = set()
        self.connection: AbstractConnection | None = None
        self.up = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


class MasterLinks:
    """Where publications go on a Redis Cluster (a ``Route`` of ``engine/redis_publishing.py``):
    one link per master, one script call per slot (every key of a call in its slot: the
    channels of one hash tag), the calls of a slot one after another, so a call sent again
    elsewhere is never overtaken by a later one of its slot.

    A call Redis sends elsewhere (it ran nothing) goes there: ``MOVED`` to the slot's master
    once the slot map is read again; ``ASK`` (the slot migrating, its keys on the importing
    master) once to the node named, after ``ASKING``; ``TRYAGAIN`` and ``CLUSTERDOWN`` (and a
    slot no master holds in the map) after a backoff, the map read again; :data:`ATTEMPTS`
    sendings in all, then an error naming the answer. A lost link is never sent again on
    (what was in flight on it fails), and has the slot map read again (a failover)."""

    def __init__(
        self, cluster: RedisCluster, keys: RedisKeys, refresh: Callable[[], Awaitable[bool]]
    ) -> None:
        self._cluster = cluster
        self._keys = keys
        self._refresh_map = refresh
        self._refreshing: asyncio.Future[bool] | None = None

    def calls(self, batch: list[_Queued]) -> list[Call]:
        by_tag: dict[str, list[_Queued]] = {}
        for item in batch:
            by_tag.setdefault(tag_of(item.channel), []).append(item)
        calls = []
        step = PUBLISH_MANY_MAX
        for items in by_tag.values():
            target = self._master_of(items[0].channel)
            parts = [Call(items[i : i + step], target) for i in range(0, len(items), step)]
            for before, after in itertools.pairwise(parts):
                before.then = after
            calls.append(parts[0])
        return calls

    def _master_of(self, channel: str) -> str | None:
        """The name of the master of ``channel``'s slot in the map, ``None`` if none."""
        try:
            node = self._cluster.get_node_from_key(self._keys.meta(channel))
        except RedisClusterException:
            return None
        return None if node is None else str(node.name)

    def connection(self, target: str) -> AbstractConnection:
        node = self._cluster.get_node(node_name=target)
        if node is None:
            raise RedisConnectionError(f"{target} is no longer a node of the Redis Cluster")
        return _connection_to(node)

    def redirect(self, call: Call, answer: ResponseError | None) -> Awaitable[None] | None:
        if answer is None:
            text = f"CLUSTERDOWN no master holds the slot of {call.items[0].channel!r}"
        else:
            text = str(answer)
        said = text.split(" ", 1)[0]
        if said not in ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN"):
            return None
        call.redirects += 1
        if said == "ASK":
            if call.asked:
                return None
            call.asked = True
            return self._ask(call, text.rsplit(" ", 1)[-1])
        if call.redirects >= ATTEMPTS:
            if said == "MOVED":
                return None
            return self._give_up(said, text)
        return self._again(call, wait=said != "MOVED")

    def lost(self, target: str) -> Awaitable[None] | None:
        return self._refresh()

    async def _ask(self, call: Call, address: str) -> None:
        host, _, port = address.rpartition(":")
        node = self._cluster.get_node(host=host, port=int(port))
        if node is None:
            await self._refresh()
            node = self._cluster.get_node(host=host, port=int(port))
        if node is None:
            raise RedisConnectionError(f"Redis Cluster asked for {address}, which it does not list")
        call.target = node.name
        call.asking = True

    async def _again(self, call: Call, *, wait: bool) -> None:
        if wait:  # a resharding or a failover under way: give it time
            await asyncio.sleep(FIRST_BACKOFF * 2 ** (call.redirects - 1))
        await self._refresh()
        call.asking = False
        call.target = self._master_of(call.items[0].channel)

    @staticmethod
    async def _give_up(said: str, text: str) -> None:
        raise RedisConnectionError(f"Redis Cluster answered {said} {ATTEMPTS} times: {text}")

    async def _refresh(self) -> None:
        """Read the slot map again (once for every call asking meanwhile)."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._refresh_map())
        await asyncio.shield(self._refreshing)


def _connection_to(node: ClusterNode) -> AbstractConnection:
    """An unconnected connection to ``node`` that never retries a command."""
    kwargs = {**node.connection_kwargs, "retry": Retry(NoBackoff(), 0), "protocol": 2}
    connection: AbstractConnection = node.connection_class(**kwargs)
    return connection


class ClusterRedisBroker(RedisBroker):
    """:class:`RedisBroker` on a Redis Cluster: sharded pub/sub, keys hash-tagged per slot."""

    _keys_class = ClusterKeys
    _publish_script = _SPUBLISH_MANY

    def __init__(self, url: str, *, prefix: str = "orbiter", **kwargs: Any) -> None:
        #: The pub/sub connections to masters, by node name, and each channel's.
        self._links: dict[str, _ShardLink] = {}
        self._link_of: dict[bytes, _ShardLink] = {}
        self._rehoming: asyncio.Task[None] | None = None
        super().__init__(url, prefix=prefix, **kwargs)

    def _make_client(self, url: str) -> aioredis.Redis:
        return cluster_client(url)

    def _publish_route(self) -> Route:
        """The links publications go to: one per master, a call per slot."""
        return MasterLinks(self._cluster, self.keys, self._refresh_slots)

    @property
    def _cluster(self) -> RedisCluster:
        return cast(RedisCluster, self._redis)

    def _owner(self, key: str | bytes) -> ClusterNode:
        """The master of ``key``'s slot, as last read; a ``ConnectionError`` if none holds it."""
        name = key.decode() if isinstance(key, bytes) else key
        try:
            node = self._cluster.get_node_from_key(name)
        except RedisClusterException as exc:
            raise RedisConnectionError(f"no master holds the slot of {name!r}: {exc}") from None
        if node is None:
            raise RedisConnectionError(f"no master holds the slot of {name!r}")
        return node

    @property
    def connected(self) -> bool:
        """The node list's connection and every master's this node needs are up."""
        return self._connection is not None and all(
            link.connection is not None for link in self._links.values() if link.names
        )

    async def close(self) -> None:
        if self._loop is None or self._closed:
            return
        for task in [self._rehoming, *(link.task for link in self._links.values())]:
            await stop(task)
        await super().close()

    # ------------------------------------------------------------ connections

    async def _listen_forever(self) -> None:
        """Hold the node list's connection (plain SUBSCRIBE) to any master; reconnect with
        backoff, to another master if need be (the slot map read again)."""

        def make() -> AbstractConnection:
            return _connection_to(random.choice(self._cluster.get_primaries()))

        async def subscribe(connection: AbstractConnection) -> None:
            if self._cluster_names:
                await connection.send_command("SUBSCRIBE", *self._cluster_names)
            self._connection = connection
            self._up.set()

        def lost() -> None:
            self._connection = None
            self._up.clear()

        async def again() -> bool:
            await self._refresh_slots()
            return True

        peer = "the Redis Cluster node list's connection"
        await self._keep_connected(peer, make, subscribe, lost, again)

    def _refused(self, error: ResponseError) -> None:
        """An SSUBSCRIBE of a slot no longer on that master (MOVED): channels follow their
        slots."""
        log.warning("Redis Cluster refused a subscription (%s)", error)
        self._rehome_soon()

    def _take(self, message: Any) -> Coroutine[Any, Any, None] | None:
        """:meth:`RedisBroker._take`, and a ``SUNSUBSCRIBE`` this node did not ask for (the
        master gave the slot away): channels follow their slots."""
        if message[0] == b"sunsubscribe":
            if message[1] in self._link_of:
                self._rehome_soon()
            return None
        return super()._take(message)

    async def _hold(self, link: _ShardLink) -> None:
        """Hold ``link``'s connection: connect, SSUBSCRIBE its channels, read; reconnect with
        backoff (channels whose slot went elsewhere move to their new master) while it has
        channels."""

        async def subscribe(connection: AbstractConnection) -> None:
            # Each catches up from history once its subscription is confirmed.
            self._resubscribed |= {n for n in link.names if self._channel_of.get(n) in self._last}
            if link.names:
                commands = [("SSUBSCRIBE", name) for name in link.names]
                await connection.send_packed_command(connection.pack_commands(commands))
            link.connection = connection
            link.up.set()

        def lost() -> None:
            link.connection = None
            link.up.clear()
            self._unconfirmed(link.names, f"lost Redis Cluster master {link.node.name}")

        async def again() -> bool:
            await self._rehome()
            return bool(link.names)

        peer = f"Redis Cluster master {link.node.name}"
        try:
            await self._keep_connected(
                peer, functools.partial(_connection_to, link.node), subscribe, lost, again
            )
        finally:
            if self._links.get(link.node.name) is link:
                del self._links[link.node.name]

    def _link(self, node: ClusterNode) -> _ShardLink:
        link = self._links.get(node.name)
        if link is None or link.task is None or link.task.done():
            link = self._links[node.name] = _ShardLink(node)
            assert self._loop is not None
            link.task = self._loop.create_task(self._hold(link))
        return link

    async def _refresh_slots(self) -> bool:
        try:
            await self._cluster.nodes_manager.initialize()
        except (RedisError, RedisClusterException, OSError) as exc:  # none reached
            log.warning("cannot read the Redis Cluster's slots: %s", exc)
            return False
        return True

    def _rehome_soon(self) -> None:
        if self._loop is not None and (self._rehoming is None or self._rehoming.done()):
            self._rehoming = self._loop.create_task(self._rehome())

    async def _rehome(self) -> None:
        """Move each subscribed channel to the master that owns its slot now."""
        if not await self._refresh_slots():
            return
        for name, link in list(self._link_of.items()):
            try:
                owner = self._owner(name)
            except RedisConnectionError as exc:
                log.warning("%s", exc)
                continue
            if owner.name == link.node.name:
                continue
            link.names.discard(name)
            moved = self._link(owner)
            moved.names.add(name)
            self._link_of[name] = moved
            if self._channel_of.get(name) in self._last:
                self._resubscribed.add(name)
            if moved.connection is not None:
                with contextlib.suppress(RedisError, OSError):
                    send_on(moved.connection, "SSUBSCRIBE", name)
            log.info("channel %r follows its slot to %s", self._channel_of.get(name), owner.name)

    # ------------------------------------------------------------ subscriptions

    async def _send_subscribe(self, name: bytes) -> None:
        """SSUBSCRIBE ``name`` on the master of its slot (connected first if need be)."""
        owner = self._owner(name)
        link = self._link(owner)
        link.names.add(name)
        self._link_of[name] = link
        await asyncio.wait_for(link.up.wait(), PING_TIMEOUT)
        connection = link.connection
        if connection is None:
            raise RedisConnectionError(f"no connection to {owner.name}")
        send_on(connection, "SSUBSCRIBE", name)

    async def _send_unsubscribe(self, name: bytes) -> None:
        link = self._link_of.pop(name, None)
        if link is not None:
            link.names.discard(name)
            if link.connection is not None:
                with contextlib.suppress(RedisError, OSError):
                    send_on(link.connection, "SUNSUBSCRIBE", name)

    async def publish_presence(self, event: PresenceEvent) -> None:
        info = event.client
        message = (b"j" if event.joined else b"l") + orjson.dumps(
            [info.client, info.user, info.info]
        )
        try:
            await self._cluster.spublish(self.keys.pubsub(event.channel), message)
        except (RedisError, OSError) as exc:  # no history: a lost one is only logged
            log.warning("could not send a presence event of %r: %s", event.channel, exc)

    async def subscribed(self, channels: list[str]) -> set[str]:
        """Those of ``channels`` some node is subscribed to (``PUBSUB SHARDNUMSUB`` on each
        channel's master); this node's own if Redis cannot say."""
        found: set[str] = set()
        groups: dict[str, tuple[ClusterNode, list[str]]] = {}
        try:
            for channel in channels:
                node = self._owner(self.keys.pubsub(channel))
                groups.setdefault(node.name, (node, []))[1].append(channel)
            for node, group in groups.values():
                names = [self.keys.pubsub(c) for c in group]
                counts = await self._cluster.execute_command(
                    "PUBSUB SHARDNUMSUB", *names, target_nodes=node
                )
                found |= {c for c, (_, n) in zip(group, counts, strict=True) if int(n) > 0}
        except (RedisError, OSError) as exc:
            log.warning("cannot ask Redis which channels have subscribers: %s", exc)
            return {c for c in channels if c in self._subscribed}
        return found


_PRESENCE_CHANNELS = (
    _PURGE
    + """
local now = clock()
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
local result = {}
for _, channel in ipairs(redis.call('zrange', KEYS[1], 0, -1)) do
  local base = ARGV[1] .. ':presence:'
  local tag = '{' .. ARGV[2] .. '}'
  local clients = base .. 'clients:' .. tag .. channel
  purge(clients, base .. 'expiries:' .. tag .. channel, base .. 'users:' .. tag .. channel, now)
  local count = redis.call('hlen', clients)
  if count > 0 then
    table.insert(result, channel)
    table.insert(result, count)
  else
    redis.call('zrem', KEYS[1], channel)
  end
end
return result
"""
)


class ClusterRedisPresenceStore(RedisPresenceStore):
    """:class:`RedisPresenceStore` on a Redis Cluster: a channel's presence keys in its slot,
    and the channels with presence listed per slot (``<prefix>:presence:channels:{tag}``)."""

    def __init__(self, url: str, *, prefix: str = "orbiter", ttl: float = 30.0) -> None:
        super().__init__(url, prefix=prefix, ttl=ttl)
        self._channels = self._redis.register_script(_PRESENCE_CHANNELS)
        self._node_clients: dict[str, aioredis.Redis] = {}

    async def close(self) -> None:
        await super().close()
        for client in self._node_clients.values():
            await client.aclose()
        self._node_clients.clear()

    def _make_client(self, url: str) -> aioredis.Redis:
        return cluster_client(url)

    def _keys(self, channel: str) -> list[str]:
        base = f"{self._prefix}:presence:"
        tag = f"{{{tag_of(channel)}}}"
        return [
            f"{base}clients:{tag}{channel}",
            f"{base}expiries:{tag}{channel}",
            f"{base}users:{tag}{channel}",
            f"{base}channels:{tag}",
        ]

    async def refresh(self) -> None:
        """Renew the entries of this node's clients: one pipeline per master, on a plain
        client of it (``RedisCluster``'s pipelines refuse scripts). The channels of a master
        that failed (a slot moved, the master lost) are tried once more after the slot map
        is read again; what still fails is raised, once every master was tried."""
        cluster = cast(RedisCluster, self._redis)
        todo = list(self._local)
        error: BaseException | None = None
        for attempt in range(2):
            groups: dict[str, tuple[ClusterNode, list[str]]] = {}
            failed: list[str] = []
            for channel in todo:
                try:
                    node = cluster.get_node_from_key(self._keys(channel)[0])
                    if node is None:
                        raise SlotNotCoveredError(f"no master holds the slot of {channel!r}")
                except RedisClusterException as exc:  # no master holds its slot
                    error = RedisConnectionError(f"Redis Cluster: {exc}")
                    failed.append(channel)
                    continue
                groups.setdefault(node.name, (node, []))[1].append(channel)
            answers = await asyncio.gather(
                *(self._refresh_on(node, group) for node, group in groups.values()),
                return_exceptions=True,
            )
            for (_, group), answer in zip(groups.values(), answers, strict=True):
                if isinstance(answer, BaseException):
                    if not isinstance(answer, (RedisError, OSError)):
                        raise answer
                    error = answer
                    failed += group
            if not failed:
                return
            todo = failed
            if attempt == 0:
                try:
                    await cluster.nodes_manager.initialize()
                except (RedisError, RedisClusterException, OSError) as exc:
                    error = RedisConnectionError(f"cannot read the slot map: {exc}")
                    break
        assert error is not None
        raise error

    async def _refresh_on(self, node: ClusterNode, channels: list[str]) -> None:
        """Renew the entries of this node's clients on ``channels``, all on ``node``."""
        pipe = node_client(self._node_clients, node).pipeline(transaction=False)
        for channel in channels:
            keys = self._keys(channel)
            for info in self._local.get(channel, {}).values():
                await self._add(keys, self._args(channel, info), client=pipe)
        await pipe.execute()

    async def channels(self) -> dict[str, int]:
        """Every slot's list of channels (found by ``SCAN`` on each master), read and purged."""
        cluster = cast(RedisCluster, self._redis)
        pattern = f"{self._prefix}:presence:channels:*"
        merged: dict[str, int] = {}
        try:
            for node in cluster.get_primaries():
                cursor = 0
                while True:
                    cursors, keys = await cluster.execute_command(
                        "SCAN", cursor, "MATCH", pattern, "COUNT", 1000, target_nodes=node
                    )
                    cursor = int(next(iter(cursors.values())))  # {node: cursor}
                    for key in keys:
                        tag = key.decode().rsplit("{", 1)[1].rstrip("}")
                        flat = await self._channels([key], [self._prefix, tag])
                        for name, count in zip(flat[::2], flat[1::2], strict=True):
                            merged[name.decode()] = int(count)
                    if cursor == 0:
                        break
        except (RedisError, OSError) as exc:
            raise EngineUnavailable(f"cannot read presence in Redis: {exc}") from None
        return merged
