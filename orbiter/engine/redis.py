"""The Redis engine: channel streams, delivery and presence shared by many orbiter nodes.

**Keeping.** A publication is one Lua script's steps on the channel's keys
(the publications of one pipeline share a call: ``_PUBLISH_MANY``): it
takes the stream's epoch (a hash ``meta``: epoch and top offset), adds one
to the offset, appends to the history stream (``XADD`` with the offset as
its id, trimmed to the history size, expiring ``ttl`` after the last
publication) and publishes the framed publication on the channel's Redis
pub/sub channel, all at once: no node can see offsets in another order than
the one delivered. The meta hash expires ``max(meta_ttl, ttl)`` after the
last publication, so it outlives the data: a drained channel still says where
it stands, and a client behind it is told it cannot recover instead of
getting nothing as if nothing was missed. The time of a publication is
Redis's (``TIME``), so every node trims history by age on one clock.

**No false OK.** The publisher is answered only once the script returned;
a publication that cannot reach Redis (or whose answer is lost) fails with
:class:`PublishFailed`. Commands are never retried by the client library:
a retry after a lost answer could publish twice. Publications queued in one
loop iteration go to Redis in one pipeline (one round trip, in order), one
pipeline in flight at a time, so their order is the order they were queued
(``engine/redis_publishing.py``, both modes: here one link to the Redis, on
a cluster one link per master); a refused publication fails alone, a lost
connection fails what was in flight on it.

**Two modes, one broker.** :class:`RedisBroker` is a single Redis (or one
shard of ``engine/redis_shards.py``); ``engine/redis_cluster_mode.py``'s
subclass supplies only what a Redis Cluster changes: the keys' hash tags,
the route of publications (``MasterLinks``), and the pub/sub connections
(one per master, ``SSUBSCRIBE``). Queueing, answering, history reads,
subscribing, catching up and delivering are this module's, for both.

**Void epoch.** A channel never published reads as offset 0 of an epoch
its first publication keeps, and reading stores nothing per channel. That
epoch is ``<node-wide random>-<Redis time // period>`` (the period is the
channel's meta lifetime): a stream forgotten after its meta expired was
created at least one period before it was forgotten, so a stream created
again later has another epoch and a position read from the old one is never
taken for one in the new one. The random part is itself kept in Redis, so a
Redis that lost its data (restarted without persistence) gives every channel
a new epoch, and subscribers behind are told they cannot recover. Redis must
not evict keys (``maxmemory-policy noeviction``, its default).

**Delivery.** Each node holds one pub/sub connection, subscribed once to
each channel it has subscribers for (never per connection); a publication
reaches a node once whatever the number of its subscribers. Each message is
handled in the I/O callback that read it (``engine/redis_wire.py``), handed
to the node at once (``engine/redis_delivery.py``: the per-message code,
compiled), awaiting only a catch-up from history. It
remembers each channel's last delivered position: a publication that does
not follow it (the connection dropped and came back) is preceded by what
history holds between them, or, if history lost them, logged. The pub/sub
connection reconnects with exponential backoff and pings Redis so that a
dead peer is noticed.

**Presence** (:class:`RedisPresenceStore`): a hash of clients per channel
with an expiry time per client (a sorted set), refreshed by the node that
holds the client while its session lives, so the clients of a node that
died leave after ``ttl``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection, BlockingConnectionPool, ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError

from orbiter.engine.base import (
    CHECK_TIMEOUT,
    Broker,
    EngineUnavailable,
    HistoryPage,
    HistoryPolicy,
    Kept,
    PresenceStore,
    Survey,
)
from orbiter.engine.redis_cluster import ClusterLink
from orbiter.engine.redis_delivery import Delivery
from orbiter.engine.redis_publishing import (
    _PUBLISH_MANY,
    COMMAND_TIMEOUT,
    OneLink,
    Publisher,
    Route,
    _period,
)
from orbiter.engine.redis_wait import DEFAULT_WAIT, IterationWait
from orbiter.engine.redis_wire import PubSubLink, send_on
from orbiter.model import JSON, ClientInfo, PresenceEvent, Publication, StreamPosition
from orbiter.tasks import stop

log = logging.getLogger("orbiter.engine.redis")

#: Seconds between pings on the pub/sub connection, and without any answer before
#: it is taken for dead.
PING_INTERVAL = 5.0
PING_TIMEOUT = 15.0
#: The reconnect backoff: first wait, longest wait (seconds).
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 2.0

_READ = """
local now = redis.call('time')
local stamp = now[1] .. '.' .. string.format('%06d', now[2])
local meta = redis.call('hmget', KEYS[1], 'e', 's')
if not meta[1] then
  local void = redis.call('get', KEYS[3])
  if not void then void = ARGV[5]; redis.call('set', KEYS[3], void) end
  return {0, void .. '-' .. math.floor(tonumber(now[1]) / tonumber(ARGV[4])), stamp, {}}
end
local top = tonumber(meta[2])
local entries = {}
if ARGV[1] == 'since' then
  if meta[1] == ARGV[6] and tonumber(ARGV[2]) <= top then
    entries = redis.call('xrange', KEYS[2], ARGV[2], '+')
  end
elseif ARGV[1] == 'latest' then
  if tonumber(ARGV[2]) > 0 then
    entries = redis.call('xrevrange', KEYS[2], '+', '-', 'COUNT', ARGV[2])
  end
elseif tonumber(ARGV[3]) > 0 and tonumber(ARGV[2]) >= 1 then
  entries = redis.call('xrevrange', KEYS[2], ARGV[2], '-', 'COUNT', ARGV[3])
end
return {top, meta[1], stamp, entries}
"""


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Where a channel lives in Redis, under one prefix (several clusters may share a Redis)."""

    prefix: str = "orbiter"

    def meta(self, channel: str) -> str:
        return f"{self.prefix}:meta:{channel}"

    def history(self, channel: str) -> str:
        return f"{self.prefix}:history:{channel}"

    def pubsub(self, channel: str) -> str:
        return f"{self.prefix}:ch:{channel}"

    @property
    def void(self) -> str:
        return f"{self.prefix}:void"

    def void_of(self, channel: str) -> str:
        """The void epoch's key a script on ``channel`` reads (one per slot in a cluster)."""
        return self.void


#: Commands in flight to one Redis at most (each on its own connection); more wait
#: for one to come back, at most :data:`POOL_WAIT` seconds. redis-py's plain pool
#: refuses the 101st at once ("Too many connections"), which failed the history read
#: of a burst of subscribes (2,000 clients subscribing together) instead of queueing it.
POOL_SIZE = 100
POOL_WAIT = 10.0


def _client(url: str) -> aioredis.Redis:
    """A client that never retries a command by itself (a retried publish could be kept
    twice), with at most :data:`POOL_SIZE` connections that commands wait for."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT,
        retry=Retry(NoBackoff(), 0),
        socket_timeout=COMMAND_TIMEOUT,
        protocol=2,
    )
    return aioredis.Redis.from_pool(pool)


def _stamp(raw: bytes) -> float:
    return float(raw)


class RedisBroker(Broker):
    """Streams and delivery shared by every node on one Redis (``url``)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "orbiter",
        backoff: tuple[float, float] = (BACKOFF_FIRST, BACKOFF_MAX),
        join: bool = True,
        command_timeout: float = COMMAND_TIMEOUT,
        commit_wait: float = DEFAULT_WAIT,
        wait: IterationWait | None = None,
    ) -> None:
        """``join``: keep this node in the node list and answer surveys through this Redis
        (False for the shards after the first of a :class:`ShardedRedisBroker`);
        ``command_timeout``: seconds a pipeline of publications may wait for Redis's
        answer before its links are taken for dead; ``commit_wait``: seconds the loop may
        wait, once per iteration, for the answer to a pipeline a flush sent
        (``engine.commit_wait``; 0: never; ``engine/redis_publishing.py``); ``wait``: that
        wait shared with other brokers (a sharded broker's shards), instead."""
        self.url = url
        #: The first and the longest wait before reconnecting (doubled each time between).
        self._backoff = backoff
        self.keys = self._keys_class(prefix)
        self._redis = self._make_client(url)
        self._read_sha = ""
        #: Where the void epochs this node offers (when Redis has none) come from: never the
        #: same one twice, so that a Redis that lost its data never gets an old one back.
        self._node_id = secrets.token_hex(4)
        self._offers = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        #: Where publications are queued, sent and answered (``engine/redis_publishing.py``).
        self._publisher = Publisher(
            self._publish_route(),
            self.keys,
            self._publish_script,
            self._void_offer,
            self._failed,
            timeout=command_timeout,
            wait=wait if wait is not None else IterationWait(commit_wait),
        )
        #: The publisher's own (the same checks, one call less per publication).
        self.publish_soon = self._publisher.queue  # type: ignore[method-assign]
        self.publish_then = self._publisher.then  # type: ignore[method-assign]
        self._listener: asyncio.Task[None] | None = None
        self._connection: AbstractConnection | None = None
        #: Set while the pub/sub connection is up.
        self._up = asyncio.Event()
        #: The ``run_id`` of the Redis it is connected to (another one: Redis restarted).
        self._run_id = ""
        #: Times Redis could not be reached (publications failed, reconnects).
        self.failures = 0
        #: This node among the others (``engine/redis_cluster.py``), and its channels.
        self.cluster = ClusterLink(self._redis, prefix, self._node_id, self.answer)
        self._joins = join
        self._cluster_names = frozenset(self.cluster.names() if join else ())
        #: Each pub/sub message handled (``engine/redis_delivery.py``, compiled), and the
        #: subscriptions it knows, shared with this broker (the same objects): the channels
        #: by their pub/sub name and back, the last publication delivered on each (or where
        #: it stood), the subscriptions not confirmed yet, and those sent again after a
        #: reconnect (each catches up once Redis confirmed it).
        self._delivery = Delivery(self._catch_up, self._cluster_names, self.cluster.received)
        self._subscribed = self._delivery.subscribed
        self._channel_of = self._delivery.channel_of
        self._last = self._delivery.last
        self._confirming = self._delivery.confirming
        self._resubscribed = self._delivery.resubscribed
        #: Each pub/sub message's handler: the delivery's own (compiled) unless a subclass
        #: handles some messages first (the cluster mode's :meth:`_take`).
        self._take_message: Callable[[Any], Coroutine[Any, Any, None] | None] = (
            self._delivery.take if type(self)._take is RedisBroker._take else self._take
        )

    clustered = True
    #: Where a channel's keys are, and the publish script (the cluster mode's keys carry
    #: their slot's hash tag, and its script ends in SPUBLISH rather than PUBLISH).
    _keys_class: type[RedisKeys] = RedisKeys
    _publish_script = _PUBLISH_MANY

    def _make_client(self, url: str) -> aioredis.Redis:
        return _client(url)

    def set_handlers(
        self, publication: Callable[[Publication], None], presence: Callable[[PresenceEvent], None]
    ) -> None:
        super().set_handlers(publication, presence)
        self._delivery.on_publication = publication
        self._delivery.on_presence = presence

    def _publish_route(self) -> Route:
        """The link(s) publications go to: one link to this Redis."""
        return OneLink(self._redis.connection_pool.make_connection)

    def _failed(self) -> None:
        """Redis could not be reached (counted in :meth:`stats`)."""
        self.failures += 1

    def _void_offer(self) -> str:
        """A void epoch for Redis to keep if it has none (a first start, or its data lost)."""
        return f"{self._node_id}{next(self._offers):x}"

    @property
    def connected(self) -> bool:
        """The pub/sub connection is up (so subscribed channels are delivered)."""
        return self._connection is not None

    def stats(self) -> dict[str, int]:
        return {"engine_up": int(self.connected), "engine_failures": self.failures}

    async def check(self) -> str | None:
        """Why this node cannot use Redis now (its pub/sub connection down, or no answer to
        a PING within :data:`CHECK_TIMEOUT`), or None. The URL is not said: it may hold a
        password."""
        if not self.connected:
            return "Redis is not connected (the node is reconnecting)"
        try:
            await asyncio.wait_for(self._redis.ping(), CHECK_TIMEOUT)
        except TimeoutError:
            return f"Redis did not answer PING within {CHECK_TIMEOUT:g} s"
        except (RedisError, OSError) as exc:
            return f"Redis did not answer PING: {type(exc).__name__}"
        return None

    # ------------------------------------------------------------ start and stop

    async def start(self) -> None:
        """Reach Redis and load the scripts; :class:`EngineUnavailable` if it cannot."""
        if self._loop is not None:
            return
        try:
            await self._redis.script_load(self._publish_script)
            self._read_sha = await self._redis.script_load(_READ)
        except (RedisError, OSError) as exc:
            await self._redis.aclose()
            raise EngineUnavailable(f"cannot reach Redis at {self.url}: {exc}") from None
        self._loop = asyncio.get_running_loop()
        self._publisher.start()
        self._listener = self._loop.create_task(self._listen_forever())
        try:
            await asyncio.wait_for(self._up.wait(), PING_TIMEOUT)
        except TimeoutError:
            await self.close()
            raise EngineUnavailable(f"cannot subscribe through Redis at {self.url}") from None
        try:
            if self._joins:
                await self.cluster.start()
        except (RedisError, OSError) as exc:
            await self.close()
            why = f"cannot join the nodes on Redis at {self.url}: {exc}"
            raise EngineUnavailable(why) from None
        log.info(
            "channel history and delivery through Redis at %s (node %s)", self.url, self._node_id
        )

    async def close(self) -> None:
        if self._loop is None or self._closed:
            return
        self._closed = True
        # What is queued or in flight is answered first (within the command timeout).
        await self._publisher.close()
        await stop(self._listener)
        if self._joins:
            await self.cluster.close()
        await self._redis.aclose()

    # ------------------------------------------------------------ publishing

    async def publish(
        self, channel: str, data: JSON, policy: HistoryPolicy, tags: dict[str, str] | None = None
    ) -> Publication:
        return await self.publish_soon(channel, data, policy, tags)

    def publish_soon(
        self, channel: str, data: JSON, policy: HistoryPolicy, tags: dict[str, str] | None = None
    ) -> asyncio.Future[Publication]:
        """Queue a publication for the next pipeline: its future, the publication once Redis
        kept it, or :class:`PublishFailed`."""
        return self._publisher.queue(channel, data, policy, tags)  # (bound in __init__)

    def publish_then(
        self,
        channel: str,
        data: JSON,
        policy: HistoryPolicy,
        tags: dict[str, str] | None,
        done: Kept,
    ) -> bool:
        """Queue a publication for the next pipeline; ``done`` is told how it went in the I/O
        callback that read Redis's answer (see ``Broker.publish_then``)."""
        return self._publisher.then(channel, data, policy, tags, done)  # (bound in __init__)

    def flush(self) -> None:
        """Send the pipeline a read queued in that read's iteration (see ``Broker.flush``)."""
        self._publisher.flush_now()

    async def publish_presence(self, event: PresenceEvent) -> None:
        info = event.client
        message = (b"j" if event.joined else b"l") + orjson.dumps(
            [info.client, info.user, info.info]
        )
        try:
            await self._redis.publish(self.keys.pubsub(event.channel), message)
        except (RedisError, OSError) as exc:  # no history: a lost one is only logged
            log.warning("could not send a presence event of %r: %s", event.channel, exc)

    # ------------------------------------------------------------ reading

    async def _read(
        self, channel: str, policy: HistoryPolicy, mode: str, a: int, b: int = 0, epoch: str = ""
    ) -> tuple[StreamPosition, float, list[Publication]]:
        """Run the read script: the stream's position, Redis's time, and the entries read
        (oldest first)."""
        keys = self.keys
        args = (
            3,
            keys.meta(channel),
            keys.history(channel),
            keys.void_of(channel),
            mode,
            a,
            b,
            _period(policy),
            self._void_offer(),
            epoch,
        )
        try:
            try:
                top, got_epoch, stamp, entries = await self._redis.evalsha(self._read_sha, *args)
            except NoScriptError:
                self._read_sha = await self._redis.script_load(_READ)
                top, got_epoch, stamp, entries = await self._redis.evalsha(self._read_sha, *args)
        except (RedisError, OSError) as exc:
            self.failures += 1
            raise EngineUnavailable(f"cannot read history from Redis: {exc}") from None
        position = StreamPosition(int(top), got_epoch.decode())
        loads = orjson.loads
        pubs = []
        for entry_id, fields in entries:
            tags = fields[3]
            pubs.append(
                Publication(
                    channel,
                    int(entry_id.split(b"-", 1)[0]),
                    position.epoch,
                    loads(fields[5]),
                    _stamp(fields[1]),
                    loads(tags) if tags else None,
                )
            )
        if mode != "since":
            pubs.reverse()
        return position, _stamp(stamp), pubs

    async def history(
        self,
        channel: str,
        since: StreamPosition | None,
        policy: HistoryPolicy,
        limit: int | None = None,
    ) -> HistoryPage:
        if since is None:
            count = policy.size if limit is None else max(0, min(limit, policy.size))
            position, now, pubs = await self._read(channel, policy, "latest", count)
            return HistoryPage(position, self._kept(pubs, position, policy, now), True)
        position, now, pubs = await self._read(
            channel, policy, "since", since.offset + 1, epoch=since.epoch
        )
        if position.offset == 0:
            return HistoryPage(position, [], since == position)
        if since.epoch != position.epoch or since.offset > position.offset:
            return HistoryPage(position, [], False)
        if since.offset == position.offset:
            return HistoryPage(position, [], True)
        kept = self._kept(pubs, position, policy, now)
        return HistoryPage(position, kept, bool(kept) and kept[0].offset == since.offset + 1)

    async def history_before(
        self, channel: str, before: int, policy: HistoryPolicy, limit: int
    ) -> HistoryPage:
        position, now, pubs = await self._read(channel, policy, "before", before - 1, max(0, limit))
        return HistoryPage(position, self._kept(pubs, position, policy, now), True)

    @staticmethod
    def _kept(
        pubs: list[Publication], position: StreamPosition, policy: HistoryPolicy, now: float
    ) -> list[Publication]:
        """Those of ``pubs`` the policy keeps (it may be stricter than when they were added)."""
        floor = position.offset - policy.size
        cutoff = now - policy.ttl
        return [p for p in pubs if p.offset > floor and p.time >= cutoff]

    # ------------------------------------------------------------ the cluster

    async def survey(self, kind: str, argument: JSON) -> Survey:
        return await self.cluster.survey(kind, argument)

    async def subscribed(self, channels: list[str]) -> set[str]:
        """Those of ``channels`` some node is subscribed to in Redis (``PUBSUB NUMSUB``: a
        node is while it has subscribers there); this node's own if Redis cannot say."""
        if not channels:
            return set()
        try:
            counts = await self._redis.pubsub_numsub(*(self.keys.pubsub(c) for c in channels))
        except (RedisError, OSError) as exc:
            log.warning("cannot ask Redis which channels have subscribers: %s", exc)
            return {c for c in channels if c in self._subscribed}
        return {c for c, (_, count) in zip(channels, counts, strict=True) if count > 0}

    # ------------------------------------------------------------ delivery

    async def subscribe(self, channel: str) -> None:
        """Subscribe this node to ``channel`` once Redis confirmed it, so that nothing
        published after this returns is missed; :class:`EngineUnavailable` if it cannot."""
        if channel in self._subscribed:
            return
        name = self.keys.pubsub(channel).encode()
        if self._connection is None or self._loop is None:
            raise EngineUnavailable(f"cannot subscribe to {channel!r}: Redis is not connected")
        self._subscribed[channel] = name
        self._channel_of[name] = channel
        future: asyncio.Future[None] = self._loop.create_future()
        self._confirming.setdefault(name, []).append(future)
        try:
            await self._send_subscribe(name)
            await asyncio.wait_for(asyncio.shield(future), PING_TIMEOUT)
        except (RedisError, OSError, TimeoutError) as exc:
            # Not subscribed: the caller forgets the channel (PubSub does), so must this node.
            self._subscribed.pop(channel, None)
            self._channel_of.pop(name, None)
            self._confirming.pop(name, None)
            await self._send_unsubscribe(name)
            raise EngineUnavailable(f"cannot subscribe to {channel!r}: {exc}") from None

    async def unsubscribe(self, channel: str) -> None:
        name = self._subscribed.pop(channel, None)
        if name is None:
            return
        self._channel_of.pop(name, None)
        self._last.pop(channel, None)
        await self._send_unsubscribe(name)

    async def _send_subscribe(self, name: bytes) -> None:
        """Ask Redis for the pub/sub channel ``name`` (confirmed by a message read later)."""
        connection = self._connection
        if connection is None:
            raise RedisConnectionError("Redis is not connected")
        send_on(connection, "SUBSCRIBE", name)

    async def _send_unsubscribe(self, name: bytes) -> None:
        """Tell Redis this node no longer wants ``name`` (nothing if it cannot be told)."""
        connection = self._connection
        if connection is not None:
            with contextlib.suppress(RedisError, OSError):
                send_on(connection, "UNSUBSCRIBE", name)

    def _unconfirmed(self, names: Iterable[bytes], why: str) -> None:
        """The subscriptions to ``names`` sent on a connection just lost are never confirmed:
        their subscribers are told now, not when :data:`PING_TIMEOUT` ends their wait."""
        lost = RedisConnectionError(why)
        for name in list(names):
            for future in self._confirming.pop(name, []):
                if not future.done():
                    future.set_exception(lost)

    async def _listen_forever(self) -> None:
        """Hold the pub/sub connection: connect, subscribe, read; reconnect with backoff."""
        # RESP2: pub/sub messages are replies read here (RESP3 would hand them to a push handler).
        pool = ConnectionPool.from_url(self.url, retry=Retry(NoBackoff(), 0), protocol=2)

        async def subscribe(connection: AbstractConnection) -> None:
            await self._forget_connections_of_a_restarted_redis(connection)
            # Each channel catches up from history once its subscription is
            # confirmed: then nothing can fall between the read and the subscription.
            self._resubscribed.clear()  # (the delivery's set: changed in place)
            self._resubscribed.update(self._subscribed[c] for c in self._last)
            names = [*self._cluster_names, *self._subscribed.values()]
            if names:
                await connection.send_command("SUBSCRIBE", *names)
            self._connection = connection
            self._up.set()

        def lost() -> None:
            self._connection = None
            self._up.clear()
            self._unconfirmed(self._confirming, f"lost the pub/sub connection to {self.url}")

        await self._keep_connected(
            f"Redis at {self.url}", pool.make_connection, subscribe, lost, _always
        )

    async def _keep_connected(
        self,
        peer: str,
        make: Callable[[], AbstractConnection],
        subscribe: Callable[[AbstractConnection], Awaitable[None]],
        lost: Callable[[], None],
        again: Callable[[], Awaitable[bool]],
    ) -> None:
        """Hold a pub/sub connection to ``peer`` (named in the logs): ``make`` one, connect it,
        ``subscribe`` on it (which marks it up), read its messages until it fails, then
        ``lost`` (which marks it down), and connect again after a backoff (doubled each time,
        from the first to the longest wait) while ``again`` says so."""
        first, longest = self._backoff
        delay = first
        while not self._closed:
            connection = make()
            try:
                await connection.connect()  # type: ignore[no-untyped-call]
                await subscribe(connection)
                if delay > first:
                    log.info("reconnected to %s", peer)
                delay = first
                await self._read_messages(connection, peer)
            except (RedisError, OSError) as exc:
                self.failures += 1
                log.error("lost %s (%s); reconnecting in %.2f s", peer, exc, delay)
            finally:
                lost()
                with contextlib.suppress(Exception):
                    await connection.disconnect()
            await asyncio.sleep(delay)
            delay = min(delay * 2, longest)
            if not await again():
                break

    async def _forget_connections_of_a_restarted_redis(
        self, connection: AbstractConnection
    ) -> None:
        """After a restart of Redis (its ``run_id`` changed) the command connections are
        dead: new ones for what comes next, rather than a publication failed on one. A
        pub/sub connection cut alone (a client kill, a proxy's timeout) leaves them be, so
        no publication under way on them fails."""
        await connection.send_command("INFO", "server")
        info = await connection.read_response(timeout=PING_TIMEOUT)
        text = info.decode() if isinstance(info, bytes) else str(info)
        run_id = next(
            (line[7:].strip() for line in text.splitlines() if line.startswith("run_id:")), ""
        )
        if self._run_id and run_id != self._run_id:
            self._publisher.drop_links("Redis restarted")
            with contextlib.suppress(Exception):
                await self._redis.connection_pool.disconnect()
        self._run_id = run_id

    async def _read_messages(self, connection: AbstractConnection, peer: str) -> None:
        """Read the pub/sub messages of ``connection`` (to ``peer``, for the logs) until it
        fails: each handled as it is parsed (``PubSubLink``; never by redis-py from here
        on), by :meth:`_take` (reading paused while a catch-up from history is awaited),
        and an error reply by :meth:`_refused`."""
        link = PubSubLink.take_over(connection, self._take_message, self._refused)
        pinger = asyncio.create_task(self._keep_alive(connection, link, peer))
        try:
            await link.done
        finally:
            pinger.cancel()
            await link.stopped()

    def _refused(self, error: ResponseError) -> None:
        """Redis refused a command of a pub/sub connection: the connection starts again."""
        raise error

    async def _keep_alive(
        self, connection: AbstractConnection, link: PubSubLink, peer: str
    ) -> None:
        """Ping Redis on a pub/sub connection, and cut it when nothing came back for
        :data:`PING_TIMEOUT` (a dead peer): the reader then reconnects."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(RedisError, OSError):
            while True:
                await asyncio.sleep(PING_INTERVAL)
                if loop.time() - link.read_at > PING_TIMEOUT:
                    log.error("%s did not answer for %g s", peer, PING_TIMEOUT)
                    link.abort(f"{peer} did not answer for {PING_TIMEOUT:g} s")
                    return
                send_on(connection, "PING")

    def _take(self, message: Any) -> Coroutine[Any, Any, None] | None:
        """Handle one message of a pub/sub connection now, or return what must be awaited
        before the next one is handled (a catch-up from history): the delivery's."""
        return self._delivery.take(message)

    async def _catch_up(self, channel: str, pub: Publication | None) -> None:
        """Deliver what ``channel`` published since its last delivered position (up to and
        including ``pub``, which does not follow it), from history."""
        held = self._last.get(channel)
        if held is None:
            if pub is not None:
                self._deliver(pub)
            return
        last = StreamPosition(held.offset, held.epoch)
        everything = HistoryPolicy(2**31, math.inf, 0.0)
        try:
            page = await self.history(channel, last, everything)
        except EngineUnavailable as exc:
            page = None
            log.error("could not read the history of %r to catch up: %s", channel, exc)
        if page is not None and not page.recoverable and page.position.epoch != last.epoch:
            # Redis lost the stream (a restart without persistence) and it started again:
            # what the new one holds from its first offset on was never delivered here.
            try:
                page = await self.history(
                    channel, StreamPosition(0, page.position.epoch), everything
                )
            except EngineUnavailable as exc:
                log.error("could not read the history of %r to catch up: %s", channel, exc)
            if page is not None and page.recoverable:
                log.error(
                    "the stream of %r was lost in Redis after offset %d of epoch %s; it goes "
                    "on in epoch %s (clients behind it cannot recover)",
                    channel,
                    last.offset,
                    last.epoch,
                    page.position.epoch,
                )
        if page is not None and page.recoverable:
            for missed in page.publications:
                self._deliver(missed)
        elif page is None or page.position != last:
            log.error(
                "publications of %r after offset %d of epoch %s were lost before this node "
                "got them (history does not hold them)",
                channel,
                last.offset,
                last.epoch,
            )
        if pub is not None:
            now = self._last.get(channel)
            if now is None or pub.epoch != now.epoch or pub.offset > now.offset:
                self._deliver(pub)

    def _deliver(self, pub: Publication) -> None:
        self._delivery.deliver(pub)


async def _always() -> bool:
    return True


_PURGE = """
local function clock()
  local now = redis.call('time')
  return tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
end
local function purge(clients, expiries, users, now)
  local gone = redis.call('zrangebyscore', expiries, '-inf', now)
  for _, client in ipairs(gone) do
    local entry = redis.call('hget', clients, client)
    if entry then
      local user = cjson.decode(entry)[1]
      if user ~= cjson.null and redis.call('hincrby', users, user, -1) <= 0 then
        redis.call('hdel', users, user)
      end
      redis.call('hdel', clients, client)
    end
    redis.call('zrem', expiries, client)
  end
end
"""

_PRESENCE_ADD = (
    _PURGE
    + """
local now = clock()
purge(KEYS[1], KEYS[2], KEYS[3], now)
local ttl = tonumber(ARGV[4])
local existed = redis.call('hexists', KEYS[1], ARGV[1]) == 1
redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
redis.call('zadd', KEYS[2], now + ttl, ARGV[1])
redis.call('zadd', KEYS[4], now + ttl, ARGV[5])
local first = 0
if not existed and ARGV[3] ~= '' and redis.call('hincrby', KEYS[3], ARGV[3], 1) == 1 then
  first = 1
end
-- After the count: a users hash made by this call expires with the others.
for i = 1, 3 do redis.call('pexpire', KEYS[i], ttl) end
return first
"""
)

_PRESENCE_REMOVE = (
    _PURGE
    + """
purge(KEYS[1], KEYS[2], KEYS[3], clock())
local entry = redis.call('hget', KEYS[1], ARGV[1])
if not entry then return false end
redis.call('hdel', KEYS[1], ARGV[1])
redis.call('zrem', KEYS[2], ARGV[1])
local user = cjson.decode(entry)[1]
if user == cjson.null then return false end
if redis.call('hincrby', KEYS[3], user, -1) > 0 then return false end
redis.call('hdel', KEYS[3], user)
return entry
"""
)

_PRESENCE_CLIENTS = (
    _PURGE
    + """
purge(KEYS[1], KEYS[2], KEYS[3], clock())
return redis.call('hgetall', KEYS[1])
"""
)

_PRESENCE_CHANNELS = (
    _PURGE
    + """
local now = clock()
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
local result = {}
for _, channel in ipairs(redis.call('zrange', KEYS[1], 0, -1)) do
  local base = ARGV[1] .. ':presence:'
  local clients = base .. 'clients:' .. channel
  purge(clients, base .. 'expiries:' .. channel, base .. 'users:' .. channel, now)
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


class RedisPresenceStore(PresenceStore):
    """Presence shared by every node on one Redis.

    Each entry expires ``ttl`` seconds after it was last refreshed; this store
    refreshes the entries of its own clients every ``ttl / 3`` seconds (one
    pipeline), so a node that dies takes its clients out of presence after ``ttl``.
    """

    def __init__(self, url: str, *, prefix: str = "orbiter", ttl: float = 30.0) -> None:
        self.url = url
        self._prefix = prefix
        #: Milliseconds an entry lives unless refreshed.
        self._ttl = max(1, round(ttl * 1000))
        self._redis = self._make_client(url)
        self._add = self._redis.register_script(_PRESENCE_ADD)
        self._remove = self._redis.register_script(_PRESENCE_REMOVE)
        self._clients = self._redis.register_script(_PRESENCE_CLIENTS)
        self._channels = self._redis.register_script(_PRESENCE_CHANNELS)
        #: This node's clients, refreshed while they live.
        self._local: dict[str, dict[str, ClientInfo]] = {}
        self._refresher: asyncio.Task[None] | None = None

    def _make_client(self, url: str) -> aioredis.Redis:
        return _client(url)

    def _keys(self, channel: str) -> list[str]:
        base = f"{self._prefix}:presence:"
        return [
            f"{base}clients:{channel}",
            f"{base}expiries:{channel}",
            f"{base}users:{channel}",
            f"{base}channels",
        ]

    def _args(self, channel: str, info: ClientInfo) -> list[bytes | str | int]:
        entry = orjson.dumps([info.user, info.info])
        return [info.client, entry, info.user or "", self._ttl, channel]

    async def start(self) -> None:
        if self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh_forever())

    async def close(self) -> None:
        await stop(self._refresher)
        self._refresher = None
        await self._redis.aclose()

    async def _call(self, what: str, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys, args)
        except (RedisError, OSError) as exc:
            raise EngineUnavailable(f"cannot {what} presence in Redis: {exc}") from None

    async def add(self, channel: str, info: ClientInfo) -> bool:
        if self._refresher is None:
            await self.start()
        self._local.setdefault(channel, {})[info.client] = info
        first = await self._call(
            "add to", self._add, self._keys(channel), self._args(channel, info)
        )
        return bool(first) and info.user is not None

    async def remove(self, channel: str, client: str) -> ClientInfo | None:
        local = self._local.get(channel)
        if local is not None:
            local.pop(client, None)
            if not local:
                del self._local[channel]
        try:
            entry = await self._call("remove from", self._remove, self._keys(channel), [client])
        except EngineUnavailable as exc:  # no longer refreshed: it expires within the TTL
            log.warning("%s (the entry of %s expires)", exc, client)
            return None
        if not entry:
            return None
        user, info = orjson.loads(entry)
        return ClientInfo(client, user, info)

    async def clients(self, channel: str) -> list[ClientInfo]:
        flat = await self._call("read", self._clients, self._keys(channel), [])
        result = []
        for client, entry in zip(flat[::2], flat[1::2], strict=True):
            user, info = orjson.loads(entry)
            result.append(ClientInfo(client.decode(), user, info))
        return result

    async def channels(self) -> dict[str, int]:
        keys = self._keys("")[3:]
        flat = await self._call("read", self._channels, keys, [self._prefix])
        return {
            name.decode(): int(count) for name, count in zip(flat[::2], flat[1::2], strict=True)
        }

    async def refresh(self) -> None:
        """Renew the entries of this node's clients (one pipeline)."""
        if not self._local:
            return
        pipe = self._redis.pipeline(transaction=False)
        for channel, clients in self._local.items():
            keys = self._keys(channel)
            for info in clients.values():
                await self._add(keys, self._args(channel, info), client=pipe)
        await pipe.execute()

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._ttl / 3000)
            try:
                await self.refresh()
            except (RedisError, OSError) as exc:
                log.warning("could not refresh presence in Redis: %s", exc)
