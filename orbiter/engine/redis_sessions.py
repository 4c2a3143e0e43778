"""Which node holds a session, and messages between nodes about sessions.

Session transports (SockJS over HTTP) keep a session in one node's memory.
Without sticky routing its next request may reach another node; that node
finds the owner here and talks to it over Redis.

**Directory.** ``<prefix>:session:<route>:<id>`` holds the id of the node
that holds session ``<id>`` of ``<route>`` (a SockJS mount and service).
A node claims an id before it creates the session (``SET NX``: one owner
cluster-wide, even when two nodes see a new id at once), renews the keys of
the sessions it holds every :data:`TTL` / 3 seconds in one pipeline (never
per request) and deletes a key when its session ends. A node that died
leaves keys that expire within :data:`TTL`; meanwhile a node asking its dead
owner gets no answer and takes the id over (``claim`` with the stale owner:
compare and set).

**Orbited keys.** An Orbited 0.3 key's URLs carry no position; the position
its last connection ended at is kept under ``<prefix>:orbited:<key>``
(:meth:`SessionDirectory.key_position`), the newer of two kept, so the key's
next poll on any node goes on from there.

**Messages.** Each node listens on its own channel (``ClusterLink``); a
message with a ``t`` kind goes to the handler registered for that kind
(:meth:`SessionDirectory.on`). :meth:`SessionDirectory.ask` sends one and
waits (bounded) for its ``reply``. What a message means, and checking that
its session is really held here, is the caller's (``transports/sockjs/remote.py``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from orbiter.engine.base import Broker
from orbiter.engine.redis import RedisBroker
from orbiter.engine.redis_cluster import ClusterLink
from orbiter.engine.redis_shards import ShardedRedisBroker
from orbiter.model import JSON, StreamPosition
from orbiter.tasks import stop

log = logging.getLogger("orbiter.engine.redis")

#: Seconds a session's directory entry lives without being renewed.
TTL = 60.0

_CLAIM = """
local current = redis.call('get', KEYS[1])
if current == false or current == ARGV[2] then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[3])
  return ARGV[1]
end
return current
"""

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""

_KEEP_NEWER = """
local kept = redis.call('get', KEYS[1])
if kept then
  local sep = string.find(kept, ':', 1, true)
  if sep and string.sub(kept, sep + 1) == ARGV[2]
      and tonumber(string.sub(kept, 1, sep - 1)) >= tonumber(ARGV[1]) then
    redis.call('pexpire', KEYS[1], ARGV[3])
    return 0
  end
end
redis.call('set', KEYS[1], ARGV[1] .. ':' .. ARGV[2], 'PX', ARGV[3])
return 1
"""

Message = dict[str, Any]


class SessionDirectory:
    """This node's view of the session directory, and its session messages."""

    def __init__(self, link: ClusterLink, ttl: float = TTL) -> None:
        self.node_id = link.node_id
        self._link = link
        self._redis = link.client
        self._prefix = f"{link.prefix}:session:"
        self._cluster_mode = isinstance(self._redis, RedisCluster)
        self._ttl_ms = round(ttl * 1000)
        self._renew_every = ttl / 3
        self._claim = self._redis.register_script(_CLAIM)
        self._release = self._redis.register_script(_RELEASE)
        self._keep_newer = self._redis.register_script(_KEEP_NEWER)
        self._positions = f"{link.prefix}:orbited:"
        #: The keys of the sessions held here, and what to call if another node took one.
        self._held: dict[str, Callable[[], None]] = {}
        self._handlers: dict[str, Callable[[Message], None]] = {}
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[Message]] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        link.on_direct = self._dispatch
        self._handlers["reply"] = self._replied

    def key(self, route: str, session_id: str) -> str:
        return f"{self._prefix}{route}:{session_id}"

    def next_id(self) -> int:
        """A number no other message of this node carries."""
        return next(self._ids)

    # ---------------------------------------------------------------- directory

    async def owner(self, key: str) -> str | None:
        """The node that holds ``key``'s session, or None when no node does."""
        value = await self._redis.get(key)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def claim(self, key: str, stale: str | None, lost: Callable[[], None]) -> str:
        """Make this node the owner if nobody (or only ``stale``) is; the owner now.

        Once this node owns it, the entry is renewed until :meth:`release`;
        ``lost`` is called if a renewal finds another node's claim there (this
        node did not answer in time and was taken for dead): the session here
        must end, so that one node serves it.
        """
        owner = await self._claim([key], [self.node_id, stale or "", self._ttl_ms])
        if isinstance(owner, bytes):
            owner = owner.decode()
        if owner == self.node_id:
            self._held[key] = lost
            if self._renewer is None:
                self._renewer = asyncio.get_running_loop().create_task(self._renew_forever())
        return str(owner)

    def release(self, key: str) -> None:
        """``key``'s session ended here: its entry goes (unless another node took it)."""
        if self._held.pop(key, None) is not None:
            self._spawn(self._delete(key))

    async def _delete(self, key: str) -> None:
        try:
            await self._release([key], [self.node_id])
        except (RedisError, OSError) as exc:  # it expires by itself
            log.warning("could not remove a session's directory entry: %s", exc)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self._renew_every)
            if not self._held:
                continue
            keys = list(self._held)
            try:
                owners = await self._renew(keys)
            except (RedisError, RedisClusterException, OSError) as exc:
                log.warning("could not renew the sessions' directory entries: %s", exc)
                continue
            for key, owner in zip(keys, owners, strict=True):
                if isinstance(owner, bytes):
                    owner = owner.decode()
                lost = self._held.get(key) if owner != self.node_id else None
                if lost is not None:
                    log.warning("a session held here was taken over by node %s", owner)
                    del self._held[key]
                    lost()

    async def _renew(self, keys: list[str]) -> list[Any]:
        """Claim ``keys`` again for this node (renewed only where it is still the owner);
        their owners now. One pipeline on a single Redis; on a Cluster, whose pipelines
        refuse scripts, one call per key (each in its own slot), all at once."""
        args: list[str | int] = [self.node_id, self.node_id, self._ttl_ms]
        if self._cluster_mode:
            return list(await asyncio.gather(*(self._claim([key], args) for key in keys)))
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                await self._claim([key], args, pipe)
            return list(await pipe.execute())

    async def key_position(self, name: str) -> StreamPosition | None:
        """Where the last connection of Orbited key ``name`` ended, on any node (or None)."""
        value = await self._redis.get(self._positions + name)
        if value is None:
            return None
        text = value.decode() if isinstance(value, bytes) else str(value)
        offset, _, epoch = text.partition(":")
        return StreamPosition(int(offset), epoch)

    async def keep_key_position(self, name: str, position: StreamPosition, ttl: float) -> None:
        """Keep ``position`` for key ``name`` ``ttl`` seconds, unless a newer one is kept."""
        args: list[str | int] = [position.offset, position.epoch, max(1, round(ttl * 1000))]
        await self._keep_newer([self._positions + name], args)

    async def close(self) -> None:
        await stop(self._renewer)
        self._renewer = None
        for task in list(self._tasks):
            task.cancel()

    # ----------------------------------------------------------------- messages

    def on(self, kind: str, handler: Callable[[Message], None]) -> None:
        """Hand messages of ``kind`` sent to this node to ``handler`` (on the loop)."""
        self._handlers[kind] = handler

    async def tell(self, node_id: str, message: Message) -> bool:
        """Send ``message`` to ``node_id``; False when nobody listens for it (or Redis failed).

        A Redis Cluster counts only the listeners on the master that took the
        PUBLISH: there, none counted means the node is not in the node list.
        """
        try:
            if await self._link.tell(node_id, message) > 0:
                return True
            return self._cluster_mode and node_id in await self._link.alive()
        except (RedisError, OSError) as exc:
            log.warning("could not reach node %s: %s", node_id, exc)
            return False

    async def ask(self, node_id: str, message: Message, timeout: float) -> Message | None:
        """Send ``message`` and wait for its reply; None without one within ``timeout``."""
        number = self.next_id()
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._replies[number] = future
        try:
            if not await self.tell(node_id, {**message, "from": self.node_id, "ask": number}):
                return None
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            return None
        finally:
            del self._replies[number]

    def reply(self, question: Message, answer: Message) -> None:
        """Answer a message sent by :meth:`ask`."""
        asker, number = question.get("from"), question.get("ask")
        if isinstance(asker, str) and isinstance(number, int):
            self._spawn(self.tell(asker, {**answer, "t": "reply", "re": number}))

    def _replied(self, message: Message) -> None:
        number = message.get("re")
        future = self._replies.get(number) if isinstance(number, int) else None
        if future is not None and not future.done():
            future.set_result(message)

    def _dispatch(self, message: dict[str, JSON]) -> None:
        handler = self._handlers.get(str(message.get("t")))
        if handler is None:
            log.info("a message of unknown kind %.50r to this node: dropped", message.get("t"))
            return
        handler(message)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def session_directory(broker: Broker) -> SessionDirectory | None:
    """The session directory of a Redis broker's cluster; None for other engines."""
    if isinstance(broker, ShardedRedisBroker):
        broker = broker.shards[0]
    if isinstance(broker, RedisBroker):
        return SessionDirectory(broker.cluster)
    return None
