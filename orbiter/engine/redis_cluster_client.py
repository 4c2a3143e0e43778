"""The command client of the Redis Cluster engine: where a command goes, and when it is sent again.

redis-py's ``RedisCluster`` follows ``MOVED`` and ``ASK``; :class:`ClusterClient` adds
what the engine needs on top of it, with its own retries switched off:

* **Routing before the slot map is read.** redis-py decides where a command goes
  before it reads the slot map, and while it has none (a fresh client, or after
  it dropped it on ``CLUSTERDOWN`` or a failed refresh) a keyed command with no
  command flag (``EVALSHA``, ``XREVRANGE``...) goes to a *random* master: one
  first read in three went to a stopped master while the map named a live one.
  The map is read first here.
* **A connection error** to a master reads the slot map again (from another
  node) and, when the slot's master changed, sends the command there, at most
  :data:`ATTEMPTS` times with backoff; when the map still names the lost master,
  the error stands at once (its slots are down; the others are not).
  Publications never come here (they go in per-master pipelines that never
  resend after a connection error): the commands sent here are reads and
  idempotent writes (presence entries, presence events).
* **CLUSTERDOWN** (the cluster, or the slot, not served), a slot no master
  holds in the map, and **TRYAGAIN** (a multi-key command during resharding,
  which redis-py itself asks up to 16 times): sent again at most
  :data:`ATTEMPTS` times with backoff (the map read again), then a
  ``ConnectionError`` naming the answer.
* **The command table** (``COMMAND``, which redis-py reads once per slot map to
  find a command's keys) is asked of the slot map's first master, then of the
  others in turn while they do not answer: redis-py asks only the first, so a
  fresh client whose map named a stopped master first failed every command.
  The master that answered becomes the default node (keyless commands).
* **Scripts** are loaded on every master that answers (redis-py's
  ``SCRIPT LOAD`` fails while any one is down), and a script a master lacks
  (``NOSCRIPT``: restarted, flushed, or down when it was loaded) is loaded on
  that master only and run again.

Every failure is a ``RedisError`` (redis-py's own ``RedisClusterException``, for
a slot no master holds or no node reached, is not), which the engine turns into
:class:`~orbiter.engine.base.EngineUnavailable` or a failed publish.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any, cast

import redis.asyncio as aioredis
from redis._parsers.commands import AsyncCommandsParser
from redis.asyncio.cluster import ClusterNode, NodesManager, RedisCluster
from redis.asyncio.connection import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.cluster import PRIMARY
from redis.exceptions import (
    ClusterDownError,
    ClusterError,
    NoScriptError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: How many times a command is sent at most (the first time included).
ATTEMPTS = 4
#: The wait before the second sending; doubled before each next one.
FIRST_BACKOFF = 0.05


class _Nodes(NodesManager):
    """redis-py's slot map, whose slots no master holds are a ``SlotNotCoveredError``
    (redis-py 8.1 lets a ``KeyError`` out when it does not require every slot covered)."""

    __slots__ = ()

    def get_node_from_slot(self, slot: int, *args: Any, **kwargs: Any) -> ClusterNode:
        if slot not in self.slots_cache:
            raise SlotNotCoveredError(f"slot {slot} is not covered by the cluster")
        node: ClusterNode = super().get_node_from_slot(slot, *args, **kwargs)
        return node


class _CommandTable(AsyncCommandsParser):
    """redis-py's command table, read from the first master of the slot map that answers
    (redis-py asks the first one only, even when it is down)."""

    __slots__ = ("_nodes",)

    def __init__(self, nodes: NodesManager) -> None:
        super().__init__()
        self._nodes = nodes

    async def initialize(self, node: ClusterNode | None = None) -> None:
        masters = self._nodes.get_nodes_by_server_type(PRIMARY)
        candidates = ([node] if node is not None else []) + [m for m in masters if m is not node]
        failure: Exception = RedisConnectionError("the Redis Cluster's slot map names no master")
        for candidate in candidates:
            try:
                await super().initialize(candidate)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                failure = exc
                continue
            self._nodes.default_node = candidate
            return
        raise failure


class ClusterClient(RedisCluster):
    """``RedisCluster`` that routes by the slot map it has read, resends a command after a
    connection error only to a new master of its slot, resends after ``CLUSTERDOWN`` or
    ``TRYAGAIN`` a bounded number of times, loads scripts per master, and fails with a
    ``RedisError`` only."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.nodes_manager.__class__ = _Nodes
        self.commands_parser = _CommandTable(self.nodes_manager)
        #: The body of each script loaded or registered, by its SHA1.
        self._script_bodies: dict[str, bytes] = {}

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        keyed = "target_nodes" not in kwargs
        delay = FIRST_BACKOFF
        for attempt in range(1, ATTEMPTS + 1):
            last = attempt == ATTEMPTS
            master: str | None = None
            try:
                await self._read_slot_map()
                master = await self._master_of(args) if keyed else None
                try:
                    return await super().execute_command(*args, **kwargs)
                except NoScriptError:
                    if master is None or not await self._load_on(master, args):
                        raise
                    return await super().execute_command(*args, **kwargs)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                # It may have reached a master that died: sent again only to another
                # master, which holds the slot now (the map read from another node).
                if last or master is None or not await self._moved_from(master, args, exc):
                    raise
            except ClusterDownError as exc:
                if last:
                    raise RedisConnectionError(
                        f"Redis Cluster is down (CLUSTERDOWN) after {ATTEMPTS} attempts: {exc}"
                    ) from None
            except SlotNotCoveredError as exc:  # a failover or a resharding under way
                self._initialize = True  # the map read again before the next attempt
                if last:
                    raise RedisConnectionError(
                        f"Redis Cluster: {exc} (slot map read {ATTEMPTS} times)"
                    ) from None
            except (TryAgainError, ClusterError) as exc:  # redis-py's TTL: TRYAGAIN 16 times
                self._initialize = True
                if last:
                    raise RedisConnectionError(
                        "Redis Cluster kept answering TRYAGAIN or redirecting (a resharding "
                        f"under way) after {ATTEMPTS} attempts: {exc}"
                    ) from None
            except RedisClusterException as exc:  # no master holds the slot, none reached
                raise RedisConnectionError(f"Redis Cluster: {exc}") from None
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    async def _moved_from(self, master: str, args: tuple[Any, ...], error: Exception) -> bool:
        """Whether the slot map, read again (the failed ``master`` asked last), gives the slot
        of the command ``args`` to another master."""
        self._initialize = True
        try:
            await self.initialize(
                last_failed_node_name=getattr(error, "last_failed_node_name", None)
            )
            return await self._master_of(args) not in (master, None)
        except (RedisConnectionError, RedisClusterException):
            return False

    async def _read_slot_map(self) -> None:
        """Read the slot map if this client has none (fresh, or dropped after a failure)."""
        if self._initialize or self.nodes_manager.default_node is None:
            self._initialize = True
            await self.initialize()

    async def _master_of(self, args: tuple[Any, ...]) -> str | None:
        """The name of the master of the slot ``args`` (a command) names; ``None`` if it names
        no key (sent wherever redis-py sends it)."""
        try:
            slot = await self._determine_slot(*args)
        except RedisClusterException:
            return None
        node: ClusterNode = self.nodes_manager.get_node_from_slot(slot)
        return node.name

    async def _load_on(self, master: str, args: tuple[Any, ...]) -> bool:
        """Load the script an ``EVALSHA`` in ``args`` names on ``master``; whether it is known."""
        if str(args[0]).upper() != "EVALSHA":
            return False
        sha = args[1].decode() if isinstance(args[1], bytes) else str(args[1])
        body = self._script_bodies.get(sha)
        node = self.get_node(node_name=master)
        if body is None or node is None:
            return False
        await super().execute_command("SCRIPT LOAD", body, target_nodes=node)
        return True

    def register_script(self, script: str | bytes | memoryview) -> Any:
        self._remember(bytes(script) if isinstance(script, memoryview) else script)
        return super().register_script(script)

    async def script_load(self, script: str | bytes) -> str:  # type: ignore[override]
        """Load ``script`` on every master that answers (at least one); its SHA1."""
        sha = self._remember(script)
        await self._read_slot_map()
        send = super().execute_command
        answers = await asyncio.gather(
            *(send("SCRIPT LOAD", script, target_nodes=m) for m in self.get_primaries()),
            return_exceptions=True,
        )
        failures = [a for a in answers if isinstance(a, BaseException)]
        if len(failures) == len(answers):
            raise failures[0] if failures else RedisConnectionError("no Redis Cluster master")
        return sha

    def _remember(self, script: str | bytes) -> str:
        body = script.encode() if isinstance(script, str) else script
        sha = hashlib.sha1(body).hexdigest()  # as Redis names it
        self._script_bodies[sha] = body
        return sha


def cluster_client(url: str) -> aioredis.Redis:
    """A :class:`ClusterClient` of the cluster ``url`` names (``redis+cluster://``).

    Typed as the plain client: the engine calls only commands both offer."""
    plain = url.strip().replace("+cluster://", "://", 1)
    client = ClusterClient.from_url(
        plain,
        retry=Retry(NoBackoff(), 0),  # resent here, by the rules above, not by redis-py
        socket_timeout=10.0,
        protocol=2,
        # A slot no master holds fails its own commands, not every other slot's.
        require_full_coverage=False,
    )
    return cast(aioredis.Redis, client)


def node_client(clients: dict[str, aioredis.Redis], node: ClusterNode) -> aioredis.Redis:
    """A plain client of the master ``node``, for pipelines of scripts (``RedisCluster``'s
    pipelines refuse them), kept in ``clients`` by node name; never retries a command."""
    client = clients.get(node.name)
    if client is None:
        kwargs = {**node.connection_kwargs, "retry": Retry(NoBackoff(), 0), "protocol": 2}
        pool = ConnectionPool(connection_class=node.connection_class, **kwargs)
        client = clients[node.name] = aioredis.Redis(connection_pool=pool)
    return client
