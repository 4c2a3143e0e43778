"""The nodes of a Redis cluster: who is alive, and asking them all a question.

**Alive.** Each node keeps an entry in one hash (``<prefix>:nodes``: its id
and the Redis time its entry expires, with its pid), renewed every
:data:`HEARTBEAT` seconds and expiring :data:`NODE_TTL` seconds after the
last renewal, so a node that died drops out by itself; a node that stops
removes its own entry.

**Surveys** answer what no single node knows (the channels subscribed on
every node, the connections of the cluster): the asking node publishes the
question on ``<prefix>:control``, which every node subscribes to; each other
node answers with its share (the broker's answerer for that kind) on the
asker's own channel ``<prefix>:node:<id>``. The asker waits for an answer
from every node alive, at most :data:`SURVEY_TIMEOUT` seconds. A question
costs the cluster one message per node, never one per connection.

:class:`RedisBroker` owns the pub/sub connection: it subscribes to
:meth:`ClusterLink.names` with its channels and hands their messages to
:meth:`ClusterLink.received`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import Callable

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from orbiter.engine.base import Survey
from orbiter.model import JSON
from orbiter.tasks import stop

log = logging.getLogger("orbiter.engine.redis")

#: Seconds between renewals of a node's entry, and seconds it lives without one.
HEARTBEAT = 1.0
NODE_TTL = 5.0
#: Seconds a survey waits for the nodes alive to answer.
SURVEY_TIMEOUT = 2.0

_ALIVE = """
local now = redis.call('time')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
if ARGV[1] ~= '' then
  redis.call('hset', KEYS[1], ARGV[1], cjson.encode({ms + tonumber(ARGV[2]), ARGV[3]}))
end
local alive = {}
local flat = redis.call('hgetall', KEYS[1])
for i = 1, #flat, 2 do
  if cjson.decode(flat[i + 1])[1] < ms then
    redis.call('hdel', KEYS[1], flat[i])
  else
    table.insert(alive, flat[i])
  end
end
return alive
"""


class ClusterLink:
    """This node's entry among the nodes alive, and its surveys of the others."""

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        node_id: str,
        answer: Callable[[str, JSON], JSON],
    ) -> None:
        self.node_id = node_id
        self._redis = client
        self._nodes_key = f"{prefix}:nodes"
        self._control = f"{prefix}:control".encode()
        self._own = f"{prefix}:node:{node_id}".encode()
        self._prefix = prefix
        self._answer = answer
        self._alive = client.register_script(_ALIVE)
        self._ids = itertools.count(1)
        #: Surveys under way: their answers so far, by node, and who is awaited.
        self._pending: dict[int, tuple[dict[str, JSON], set[str], asyncio.Event]] = {}
        self._heart: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: Where messages to this node alone (those with a "t" kind) go
        #: (``engine/redis_sessions.py``); None: they are dropped.
        self.on_direct: Callable[[dict[str, JSON]], None] | None = None

    @property
    def client(self) -> aioredis.Redis:
        """The Redis client of the node list (for what else lives beside it)."""
        return self._redis

    @property
    def prefix(self) -> str:
        return self._prefix

    async def tell(self, node_id: str, message: dict[str, JSON]) -> int:
        """Publish ``message`` to node ``node_id`` alone; how many listened (0: none)."""
        listened: int = await self._redis.publish(
            f"{self._prefix}:node:{node_id}", orjson.dumps(message)
        )
        return listened

    def names(self) -> list[bytes]:
        """The pub/sub channels this node listens to for the cluster."""
        return [self._control, self._own]

    async def start(self) -> None:
        await self.beat()
        self._heart = asyncio.create_task(self._beat_forever())

    async def close(self) -> None:
        await stop(self._heart)
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(RedisError, OSError):
            await self._redis.hdel(self._nodes_key, self.node_id)

    async def beat(self) -> list[str]:
        """Renew this node's entry; the ids of the nodes alive (this one included)."""
        ttl = round(NODE_TTL * 1000)
        alive = await self._alive([self._nodes_key], [self.node_id, ttl, os.getpid()])
        return [node.decode() for node in alive]

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT)
            try:
                await self.beat()
            except (RedisError, OSError) as exc:
                log.warning("could not renew this node's entry in Redis: %s", exc)

    async def alive(self) -> list[str]:
        """The ids of the nodes alive, this one included."""
        alive = await self._alive([self._nodes_key], ["", 0, 0])
        return [node.decode() for node in alive]

    async def survey(self, kind: str, argument: JSON) -> Survey:
        """Every other node's answer to ``kind`` (see the module's docstring)."""
        try:
            others = set(await self.alive()) - {self.node_id}
        except (RedisError, OSError) as exc:
            log.warning("cannot ask the other nodes (%s): %s", kind, exc)
            return Survey(1, [])
        if not others:
            return Survey(1, [])
        number = next(self._ids)
        answers: dict[str, JSON] = {}
        done = asyncio.Event()
        self._pending[number] = (answers, others, done)
        question = {"id": number, "from": self.node_id, "kind": kind, "arg": argument}
        try:
            await self._redis.publish(self._control, orjson.dumps(question))
            await asyncio.wait_for(done.wait(), SURVEY_TIMEOUT)
        except TimeoutError:
            log.warning(
                "%d of %d nodes did not answer a survey (%s) within %g s",
                len(others - set(answers)),
                len(others),
                kind,
                SURVEY_TIMEOUT,
            )
        except (RedisError, OSError) as exc:
            log.warning("cannot ask the other nodes (%s): %s", kind, exc)
        finally:
            del self._pending[number]
        return Survey(len(others) + 1, list(answers.values()))

    def received(self, name: bytes, payload: bytes) -> None:
        """A message on one of :meth:`names`: a question to answer, or an answer."""
        message = orjson.loads(payload)
        if name == self._control:
            if message["from"] != self.node_id:
                task = asyncio.create_task(self._reply(message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            return
        if "t" in message:  # to this node alone, not a survey's answer
            if self.on_direct is not None:
                self.on_direct(message)
            return
        pending = self._pending.get(message["id"])
        if pending is not None:
            answers, awaited, done = pending
            answers[message["node"]] = message["answer"]
            if awaited <= set(answers):
                done.set()

    async def _reply(self, question: dict[str, JSON]) -> None:
        try:
            answer = self._answer(str(question["kind"]), question.get("arg"))
        except Exception:  # a bug in an answerer: the asker gets no answer from here
            log.exception("could not answer a survey %.200r", question)
            return
        reply = {"id": question["id"], "node": self.node_id, "answer": answer}
        try:
            asker = f"{self._prefix}:node:{question['from']}"
            await self._redis.publish(asker, orjson.dumps(reply))
        except (RedisError, OSError) as exc:
            log.warning("could not answer a survey: %s", exc)
