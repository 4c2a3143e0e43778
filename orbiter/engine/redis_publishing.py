"""Publications to Redis: queued, sent as publish-script calls over ``CommandLink`` s, answered.

One :class:`Publisher` serves both modes of the Redis engine; a :class:`Route`
says what differs: which link a publication goes to, and what to do when
Redis sends a call elsewhere. :class:`OneLink` is a single Redis's (one link);
the cluster mode's (one link per master, ``MOVED``/``ASK``/``TRYAGAIN``
followed) is ``engine/redis_cluster_mode.py``'s ``MasterLinks``.

**Pipelines.** Publications queued in one loop iteration go to Redis
together; the next ones wait until every call of those is answered (one
pipeline in flight at a time), so their order is the order they were queued.
A pipeline is split into calls of :data:`_PUBLISH_MANY` (one call per link,
at most :data:`PUBLISH_MANY_MAX` publications each; on a cluster, one slot
per call), written to each link in one write; the answers are handed to
the publishers in the I/O callback that parsed them (``CommandLink``), the
last one sending what was queued meanwhile.

**Telling.** Each publication's publisher is told by a callback (``Kept``,
:meth:`Publisher.then`: ``Broker.publish_then``) called in that I/O callback,
in the order of the call's answer: no loop iteration between Redis's reply and
the publisher's answer. :meth:`Publisher.queue` (``Broker.publish_soon``) is
the same, its callback settling a future.

**The read's own iteration.** A flush (``Broker.flush``: a read's publications
queued) sends its pipeline at once, and, when the whole pipeline went in one
write to one link, may wait a bounded time (``engine.commit_wait``) for the
answer: the link's socket read behind its transport (``engine/redis_wait.py``,
``CommandLink.read_now``), the answers handed over, and the publishers told,
before the flush returns. So a publisher's next requests come an iteration
sooner (as on the embedded engines, whose publications are kept within the
read), and each iteration's share of the rolling fan-out's writes
(``services/pubsub.py``) carries more publications. At most one wait per loop
iteration (:class:`~orbiter.engine.redis_wait.IterationWait`, shared by a
sharded broker's shards), never longer than the bound, none for a while after
one ran out (a Redis farther away than the bound); a pipeline split over
several links (a cluster's masters) or over a link being made is never waited
for. The answers are the same, in the same order, whichever side reads them.

**No false OK.** A refused publication fails alone; a lost connection fails
what was in flight on it (never sent again: its answer may be all that was
lost); a pipeline unanswered for :data:`COMMAND_TIMEOUT` has its links cut.
A call refused for a lost script (``NOSCRIPT``: Redis restarted or was
flushed; it ran nothing) is sent once more with the script's text (``EVAL``
keeps it for the next calls). The calls of one pipeline in flight together
on one link that may share a channel (a single Redis's pipeline of more than
:data:`PUBLISH_MANY_MAX`) all carry the text: by ``EVALSHA``, a later call
could run (the script loaded meanwhile by another node) while an earlier one
was refused, and its channel's publications would be kept out of order.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from orbiter.engine.base import HistoryPolicy, Kept, PublishFailed
from orbiter.engine.redis_wait import IterationWait
from orbiter.engine.redis_wire import CommandLink, pack_command
from orbiter.model import JSON, Publication
from orbiter.tasks import stop

log = logging.getLogger("orbiter.engine.redis")

#: Seconds a command may wait for Redis's answer before its connection is taken for dead.
COMMAND_TIMEOUT = 10.0

#: The publish script (one call per pipeline and link, rather than one per publication:
#: Redis's cost per script call is shared). KEYS: the void epoch's key, then each
#: publication's meta and history keys; ARGV: a void epoch to offer, then six per
#: publication (pub/sub channel, history size, history TTL in ms, meta TTL in s, tags,
#: data; the size is never negative: the script compares it with ``'0'``, and formats each
#: offset once, a number's formatting being much of Redis's work per publication). Each
#: publication is run under ``pcall``: one that fails (a key of another type)
#: answers its error in its place, and the others are kept. A key's TTL is not set again
#: to the value the call's previous TTL set gave it (``last_*``: the publications of a
#: channel in a row, as a fan-out's; Redis 7 reads its clock once per script, an older
#: one some microseconds later), but is after the key was deleted. The answer, flat (no array
#: per publication, for Redis to write or orbiter to parse): Redis's time, then two
#: entries per publication: its offset and its epoch, the epoch ``''`` when it is the
#: last one this answer named (most publications of a call share one); or an error and
#: ``''``. See ``engine/redis.py`` ("Keeping").
_PUBLISH_MANY = """
local now = redis.call('time')
local stamp = now[1] .. '.' .. string.format('%06d', now[2])
local seconds = tonumber(now[1])
local void = nil
local last_meta, last_period, last_history, last_ttl = nil, nil, nil, nil
local function publish(meta, history, channel, size, ttl, period, tags, data)
  local epoch = redis.call('hget', meta, 'e')
  if not epoch then
    if not void then
      void = redis.call('get', KEYS[1])
      if not void then void = ARGV[1]; redis.call('set', KEYS[1], void) end
    end
    epoch = void .. '-' .. math.floor(seconds / tonumber(period))
    redis.call('hset', meta, 'e', epoch)
    redis.call('del', history)
    if history == last_history then last_history = nil end
  end
  local offset = redis.call('hincrby', meta, 's', 1)
  local id = tostring(offset)
  if meta ~= last_meta or period ~= last_period then
    redis.call('expire', meta, period)
    last_meta, last_period = meta, period
  end
  if size ~= '0' then
    redis.call('xadd', history, 'MAXLEN', size, id .. '-0', 't', stamp, 'g', tags, 'd', data)
    if history ~= last_history or ttl ~= last_ttl then
      redis.call('pexpire', history, ttl)
      last_history, last_ttl = history, ttl
    end
  else
    redis.call('del', history)
    if history == last_history then last_history = nil end
  end
  local framed
  if tags == '' then
    framed = id .. ':' .. epoch .. ':' .. stamp .. ':0:' .. data
  else
    framed = id .. ':' .. epoch .. ':' .. stamp .. ':' .. #tags .. ':' .. tags .. data
  end
  redis.call('publish', channel, framed)
  return offset, epoch
end
local out = {stamp}
local named = nil
for i = 1, (#KEYS - 1) / 2 do
  local a = i * 6 - 4
  local ok, result, epoch = pcall(publish, KEYS[i * 2], KEYS[i * 2 + 1], ARGV[a], ARGV[a + 1],
                                  ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5])
  if ok then
    out[i * 2] = result
    if epoch == named then epoch = '' else named = epoch end
    out[i * 2 + 1] = epoch
  else
    if type(result) ~= 'table' then result = {err = tostring(result)} end
    out[i * 2] = result
    out[i * 2 + 1] = ''
  end
end
return out
"""
#: The same on a Redis Cluster: ``SPUBLISH`` (the channel's shard only).
_SPUBLISH_MANY = _PUBLISH_MANY.replace("redis.call('publish'", "redis.call('spublish'")
#: Publications per script call at most (a pipeline of more makes more calls), so that one
#: call never holds Redis long.
PUBLISH_MANY_MAX = 128


#: Channels whose key names a publisher keeps framed (forgotten all at once past it).
NAMES_KEPT = 4096
#: The heads (``$<length>\r\n``) of RESP bulk strings of the lengths most arguments have.
_HEADS = tuple(b"$%d\r\n" % size for size in range(1024))


def _head(size: int) -> bytes:
    """The head of a RESP bulk string of ``size`` bytes."""
    return _HEADS[size] if size < 1024 else b"$%d\r\n" % size


def _bulk(data: bytes) -> bytes:
    """``data`` as a RESP bulk string."""
    return _head(len(data)) + data + b"\r\n"


#: The tags' script argument of a publication without tags (an empty bulk string).
_NO_TAGS = b"$0\r\n\r\n"


def _head_of(pubsub: bytes, policy: HistoryPolicy) -> bytes:
    """A publication's first four script arguments: its (framed) pub/sub name, then its
    policy's history size, history TTL and meta TTL, framed."""
    size, ttl_ms, period = _policy_args(policy)
    return (
        pubsub
        + _bulk(str(size).encode())
        + _bulk(str(ttl_ms).encode())
        + _bulk(str(period).encode())
    )


class _Framed:
    """A channel's script arguments that do not change from one publication to the next,
    framed for the wire: its two keys, its pub/sub name, and that with ``policy``'s
    (``head``); and the void epoch's key a call on it reads (``void``: a call's first key,
    named after its first publication's channel)."""

    __slots__ = ("head", "keys", "policy", "pubsub", "void")

    def __init__(self, keys: bytes, pubsub: bytes, policy: HistoryPolicy, void: bytes) -> None:
        self.keys = keys
        self.pubsub = pubsub
        self.policy = policy
        self.head = _head_of(pubsub, policy)
        self.void = void


def _seconds(value: float) -> int:
    """A TTL in whole seconds for Redis: at least 1, and a day's worth of years when infinite."""
    if math.isinf(value) or value > 10**9:
        return 10**9
    return max(1, math.ceil(value))


def _period(policy: HistoryPolicy) -> int:
    """How long a stream's epoch and offset outlive its last publication (the meta's TTL)."""
    return _seconds(max(policy.meta_ttl, policy.ttl))


def _policy_args(policy: HistoryPolicy) -> tuple[int, int, int]:
    """The script's history size, history TTL (milliseconds) and meta TTL (seconds)."""
    return max(0, policy.size), _seconds(policy.ttl) * 1000, _period(policy)


class ChannelKeys(Protocol):
    """Where a channel lives in Redis (``engine/redis.py``'s ``RedisKeys``)."""

    def meta(self, channel: str) -> str: ...
    def history(self, channel: str) -> str: ...
    def pubsub(self, channel: str) -> str: ...
    def void_of(self, channel: str) -> str: ...


class _Queued:
    """A publication waiting for its pipeline, and who is told how it went (``done``)."""

    __slots__ = ("channel", "data", "done", "encoded", "policy", "tags", "tags_framed")

    def __init__(
        self,
        channel: str,
        data: JSON,
        policy: HistoryPolicy,
        tags: dict[str, str] | None,
        done: Kept,
    ) -> None:
        self.channel = channel
        self.data = data
        self.tags = tags
        #: Its data's JSON, and its tags' framed for the wire (a script argument).
        self.encoded = orjson.dumps(data)
        self.tags_framed = _bulk(orjson.dumps(tags)) if tags else _NO_TAGS
        self.policy = policy
        self.done = done


class Call:
    """One call of the publish script: its publications, the link it goes to (``target``,
    ``None`` when no link is known for it), whether it carries the script's text, whether
    ``ASKING`` goes before it, how many times it was sent elsewhere, and the call of the
    same slot to send once this one is answered (``then``)."""

    __slots__ = ("asked", "asking", "items", "redirects", "target", "then", "with_text")

    def __init__(self, items: list[_Queued], target: str | None, *, with_text: bool = False):
        self.items = items
        self.target = target
        self.with_text = with_text
        self.asking = False
        self.asked = False
        self.redirects = 0
        self.then: Call | None = None


class Route(Protocol):
    """What differs between a single Redis and a cluster, for publications."""

    def calls(self, batch: list[_Queued]) -> list[Call]:
        """``batch`` (in the order queued) as script calls to send now; each call's
        ``then`` chain is sent after it, in order."""
        ...

    def connection(self, target: str) -> AbstractConnection:
        """An unconnected redis-py connection to ``target`` (a link to make)."""
        ...

    def redirect(self, call: Call, answer: ResponseError | None) -> Awaitable[None] | None:
        """What to await before sending ``call`` again (it then has its new target), when
        ``answer`` (``None``: no target was known) sends it elsewhere; ``None`` when it
        does not (the answer stands). What is awaited raises a ``RedisError`` when it gives
        up: the call fails with it."""
        ...

    def lost(self, target: str) -> Awaitable[None] | None:
        """What to do (``None``: nothing) when the link to ``target`` was lost or could not
        be made."""
        ...


class OneLink:
    """A single Redis: every publication on one link, a pipeline split in calls of at most
    :data:`PUBLISH_MANY_MAX` in the order queued (with the script's text when there are
    several: see the module's docstring); Redis never sends a call elsewhere."""

    def __init__(self, make_connection: Callable[[], AbstractConnection]) -> None:
        self._make_connection = make_connection

    def calls(self, batch: list[_Queued]) -> list[Call]:
        step = PUBLISH_MANY_MAX
        if len(batch) <= step:
            return [Call(batch, "")]
        return [Call(batch[i : i + step], "", with_text=True) for i in range(0, len(batch), step)]

    def connection(self, target: str) -> AbstractConnection:
        return self._make_connection()

    def redirect(self, call: Call, answer: ResponseError | None) -> Awaitable[None] | None:
        return None

    def lost(self, target: str) -> Awaitable[None] | None:
        return None


class Publisher:
    """Publications queued, sent in pipelines through links a :class:`Route` chooses, and
    their publishers answered; see the module's docstring."""

    def __init__(
        self,
        route: Route,
        keys: ChannelKeys,
        script: str,
        void_offer: Callable[[], str],
        failed: Callable[[], None],
        *,
        timeout: float = COMMAND_TIMEOUT,
        wait: IterationWait | None = None,
    ) -> None:
        """``script``: :data:`_PUBLISH_MANY` or :data:`_SPUBLISH_MANY`; ``void_offer``: a void
        epoch to offer; ``failed``: called each time Redis could not be reached; ``timeout``:
        seconds a pipeline may wait for its answers (:data:`COMMAND_TIMEOUT`); ``wait``: how
        long a flush may wait for its pipeline's answer (None: it never waits; see the
        module's docstring)."""
        self._timeout = timeout
        self._wait = wait
        #: Pipelines sent so far (a flush's wait is over once its own is answered).
        self._pipelines = 0
        self._route = route
        self._keys = keys
        self._script = script
        self._sha = hashlib.sha1(script.encode()).hexdigest()
        self._void_offer = void_offer
        self._failed = failed
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[_Queued] = []
        #: Channels' arguments framed for the wire (:meth:`_framed`).
        self._names: dict[str, _Framed] = {}
        #: The links by target, and the tasks making those that are not made yet.
        self._links: dict[str, CommandLink] = {}
        self._opening: dict[str, asyncio.Task[None]] = {}
        #: Calls of the pipeline in flight not answered yet (sent, waiting for a link, to be
        #: sent again, or chained behind another).
        self._in_flight = 0
        self._sent_at = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self._flush_due = False
        #: The next iteration's send of what is queued (cancelled by :meth:`flush_now`).
        self._flush_handle: asyncio.Handle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: Closed: no publication taken; stopped: none sent any more (the close drained).
        self._closed = False
        self._stopped = False
        #: Set by a close waiting for what is queued and in flight to be answered.
        self._drained: asyncio.Future[None] | None = None

    def start(self) -> None:
        """Take publications from now on (in the running loop)."""
        self._loop = asyncio.get_running_loop()

    def queue(
        self, channel: str, data: JSON, policy: HistoryPolicy, tags: dict[str, str] | None = None
    ) -> asyncio.Future[Publication]:
        """Queue a publication for the next pipeline: its future, the publication once Redis
        kept it, or :class:`PublishFailed` (:meth:`then`'s callback settles it)."""
        loop = self._loop
        if loop is None or self._closed:
            raise PublishFailed("the engine is closed" if self._closed else "not started")
        future: asyncio.Future[Publication] = loop.create_future()
        self._queue(loop, _Queued(channel, data, policy, tags, functools.partial(_resolve, future)))
        return future

    def then(
        self,
        channel: str,
        data: JSON,
        policy: HistoryPolicy,
        tags: dict[str, str] | None,
        done: Kept,
    ) -> bool:
        """Queue a publication for the next pipeline (``Broker.publish_then``): ``done`` is
        called with the publication once Redis kept it, or with :class:`PublishFailed`, in
        the I/O callback that read Redis's answer (in the order queued). Refused at once,
        as :meth:`queue` is."""
        loop = self._loop
        if loop is None or self._closed:
            raise PublishFailed("the engine is closed" if self._closed else "not started")
        self._queue(loop, _Queued(channel, data, policy, tags, done))
        return True

    def _queue(self, loop: asyncio.AbstractEventLoop, queued: _Queued) -> None:
        """Queue ``queued``; the next iteration sends it, unless a pipeline is in flight."""
        self._pending.append(queued)
        if not (self._flush_due or self._in_flight):
            self._flush_due = True
            self._flush_handle = loop.call_soon(self._flush)

    def flush_now(self) -> None:
        """Send what is queued now rather than at the next iteration (``Broker.flush``):
        unless a pipeline is in flight, whose last answer sends it. Then wait a bounded
        time for its answer, when it all went to one link (see the module's docstring)."""
        handle = self._flush_handle
        if self._flush_due and not self._in_flight and handle is not None:
            handle.cancel()
            link = self._flush()
            wait = self._wait
            if link is not None and wait is not None and wait.bound > 0 and link.waitable:
                self._wait_for(link, wait)

    def _wait_for(self, link: CommandLink, wait: IterationWait) -> None:
        """Read ``link``'s answers to the pipeline just sent on it for as long as
        ``wait`` lets this iteration (nothing if it waited already), until the pipeline
        is answered; the answers are handed over as they are read."""
        assert self._loop is not None
        bound = wait.take(self._loop)
        if bound <= 0:
            return
        sent = self._pipelines
        deadline = time.monotonic() + bound
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not link.read_now(left):
                if self._in_flight and self._pipelines == sent:
                    wait.ran_out()
                return
            if not self._in_flight or self._pipelines != sent:
                return  # answered (what came meanwhile may have gone as the next one)

    def _flush(self) -> CommandLink | None:
        """Send what is queued as one pipeline, unless one is in flight (its last answer
        sends this one): the link it was all written to, if one (None: several, a link
        being made, or nothing sent)."""
        self._flush_due = False
        self._flush_handle = None
        if self._in_flight or not self._pending or self._stopped:
            return None
        loop = self._loop
        assert loop is not None
        batch, self._pending = self._pending, []
        calls = self._route.calls(batch)
        count = len(calls)
        for call in calls:
            then = call.then
            while then is not None:
                count += 1
                then = then.then
        self._in_flight = count
        self._pipelines += 1
        self._sent_at = loop.time()
        if self._watchdog is None:
            self._watchdog = loop.call_later(self._timeout, self._watch)
        target = calls[0].target
        if count == 1 and target is not None:  # most pipelines
            return self._write(target, calls)
        if count == len(calls) and all(call.target == target for call in calls):
            return self._send(calls)  # (one link's: a single Redis's long pipeline)
        self._send(calls)
        return None

    def _send(self, calls: list[Call]) -> CommandLink | None:
        """Write ``calls`` to their links, one write per link (a link is made first if need
        be, the calls for it waiting): the link written to, when there was one."""
        by_target: dict[str, list[Call]] = {}
        for call in calls:
            if call.target is None:
                self._follow(call, None)
            else:
                by_target.setdefault(call.target, []).append(call)
        written = None
        for target, group in by_target.items():
            written = self._write(target, group)
        return written if len(by_target) == 1 else None

    def _write(self, target: str, calls: list[Call]) -> CommandLink | None:
        """Write ``calls`` to the link to ``target`` in one write (once it is made): the link,
        when written now (None: it is being made, or the engine closed)."""
        if self._stopped:
            for call in calls:
                self._settle(call, RedisConnectionError("the engine closed"))
            return None
        link = self._links.get(target)
        if link is None or not link.usable:
            self._open(target, calls)
            return None
        packed: list[bytes] = []
        handlers: list[Callable[[Any], None]] = []
        for call in calls:
            if call.asking:
                packed.append(pack_command(("ASKING",)))
                handlers.append(_ignore)
            packed.append(self._packed(call))
            handlers.append(functools.partial(self._answered, call))
        link.send(b"".join(packed), handlers)
        return link

    def _open(self, target: str, calls: list[Call]) -> None:
        """Make the link to ``target``, then send ``calls`` on it; if Redis cannot be reached,
        they fail (never wait for a Redis that may not come back)."""
        task = self._opening.get(target)
        if task is None:
            assert self._loop is not None
            task = self._opening[target] = self._loop.create_task(self._make_link(target))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda done: self._after_open(target, calls, done))

    async def _make_link(self, target: str) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                self._links[target] = await CommandLink.open(self._route.connection(target))
        except Exception:
            self._links.pop(target, None)
            self._lost(target)
            raise
        finally:
            self._opening.pop(target, None)

    def _after_open(self, target: str, calls: list[Call], done: asyncio.Task[None]) -> None:
        error = RedisConnectionError("the engine closed") if done.cancelled() else done.exception()
        link = self._links.get(target)
        if error is None and link is not None and link.usable:
            self._send(calls)
            return
        why = error or RedisConnectionError(f"the link to {target or 'Redis'} was lost")
        for call in calls:
            self._settle(call, why)

    def _answered(self, call: Call, answer: Any) -> None:
        """Redis's answer to ``call``: a lost script is sent once more with its text, a call
        sent elsewhere (on a cluster) goes there, and otherwise its publishers are answered."""
        if isinstance(answer, ResponseError):
            if not call.with_text and str(answer).startswith("NOSCRIPT"):
                call.with_text = True
                self._send([call])
                return
            redirect = self._route.redirect(call, answer)
            if redirect is not None:
                self._follow(call, redirect)
                return
        elif isinstance(answer, BaseException) and call.target is not None:
            self._lost(call.target)
        self._settle(call, answer)

    def _lost(self, target: str) -> None:
        after = None if self._closed else self._route.lost(target)
        if after is not None:
            self._run(after)

    def _run(self, what: Awaitable[None]) -> None:
        """Run ``what`` on a task of this publisher's (cancelled when it closes)."""
        assert self._loop is not None
        task = self._loop.create_task(_awaited(what))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _follow(self, call: Call, redirect: Awaitable[None] | None) -> None:
        """Send ``call`` again once ``redirect`` gave it its new target (or fail it)."""
        if redirect is None:
            redirect = self._route.redirect(call, None)
        if redirect is None:
            self._settle(call, _unreachable(call.target))
            return

        async def follow(redirect: Awaitable[None]) -> None:
            try:
                await redirect
            except Exception as exc:
                self._settle(call, exc)
                return
            self._send([call])

        self._run(follow(redirect))

    def _settle(self, call: Call, answer: Any) -> None:
        """Answer the publishers of ``call`` with ``answer``: Redis's answer to it, or what
        kept it from Redis; then the call chained behind it goes, or the next pipeline."""
        items = call.items
        if isinstance(answer, ResponseError):  # the call refused as a whole (OOM, BUSY)
            _fail(items, PublishFailed(f"Redis refused it: {answer}"))
        elif isinstance(answer, BaseException):  # the connection lost: the answers with it
            self._failed()
            log.error("could not publish %d publications: %s", len(items), answer)
            _fail(items, PublishFailed(f"the server could not reach Redis: {answer}"))
        else:
            self._kept(items, answer)
        self._in_flight -= 1
        if call.then is not None:
            self._send([call.then])
        elif not self._in_flight:
            if self._pending:
                self._flush()
            else:
                self._quiet()

    def _kept(self, items: list[_Queued], replies: list[Any]) -> None:
        """Tell each of ``items``' publishers its answer in ``replies`` (the script's: Redis's
        time, then an offset and an epoch, ``b""`` for the last one named, or an error and
        ``b""``, per publication, in order); none is told it was kept when the answers are
        not two per publication."""
        if len(replies) != 2 * len(items) + 1:
            _fail(items, PublishFailed(f"Redis answered {len(replies)} for {len(items)}"))
            return
        when = float(replies[0])
        epoch = ""
        index = 1
        for item in items:
            each = replies[index]
            named: bytes = replies[index + 1]
            index += 2
            if not isinstance(each, int):  # a ResponseError in its place
                _tell(item, PublishFailed(f"Redis refused it: {each}"))
                continue
            if named:
                epoch = named.decode()
            elif not epoch:  # (the script names an epoch first)
                _tell(item, PublishFailed("Redis answered no epoch"))
                continue
            _tell(item, Publication(item.channel, each, epoch, item.data, when, item.tags))

    def _quiet(self) -> None:
        """Nothing is queued or in flight: a close waiting for that may go on."""
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _watch(self) -> None:
        """Cut the links still waiting for answers when a pipeline waited
        :data:`COMMAND_TIMEOUT` (a master that answers is left be)."""
        self._watchdog = None
        if not self._in_flight or self._loop is None:
            return
        left = self._sent_at + self._timeout - self._loop.time()
        if left > 0:
            self._watchdog = self._loop.call_later(left, self._watch)
            return
        for link in list(self._links.values()):
            if link.waiting:
                link.abort(f"Redis did not answer within {self._timeout:g} s")

    def _packed(self, call: Call) -> bytes:
        """``call`` packed for the wire (the script by its SHA-1, or its text), in RESP
        built here: hiredis's ``pack_command`` formats each of a call's 8 arguments per
        publication on its own (a ``repr`` and allocations each), several times the cost
        of joining these parts; a channel's key names, pub/sub name and policy come framed
        from :meth:`_framed`."""
        items = call.items
        names: list[bytes] = []
        args = [_bulk(self._void_offer().encode())]
        for item in items:
            framed = self._framed(item.channel, item.policy)
            if not names:
                names.append(framed.void)
            names.append(framed.keys)
            data = item.encoded
            args.append(framed.head)
            args.append(item.tags_framed)
            args.append(_head(len(data)))
            args.append(data)
            args.append(b"\r\n")
        key_count = 1 + 2 * len(items)  # the void epoch's, then two per publication
        if call.with_text:
            verb, script = b"EVAL", self._script.encode()
        else:
            verb, script = b"EVALSHA", self._sha.encode()
        head = [
            b"*",
            str(3 + key_count + 1 + 6 * len(items)).encode(),
            b"\r\n",
            _bulk(verb),
            _bulk(script),
            _bulk(str(key_count).encode()),
        ]
        return b"".join(head + names + args)

    def _framed(self, channel: str, policy: HistoryPolicy) -> _Framed:
        """``channel``'s arguments that do not change from one publication to the next,
        framed as RESP bulk strings; kept for the next publications (at most
        :data:`NAMES_KEPT` channels'; the policy's framed again when another object)."""
        known = self._names.get(channel)
        if known is not None:
            if known.policy is not policy:
                known.policy, known.head = policy, _head_of(known.pubsub, policy)
            return known
        keys = self._keys
        meta, history = keys.meta(channel).encode(), keys.history(channel).encode()
        pubsub = _bulk(keys.pubsub(channel).encode())
        void = _bulk(keys.void_of(channel).encode())
        framed = _Framed(_bulk(meta) + _bulk(history), pubsub, policy, void)
        if len(self._names) >= NAMES_KEPT:
            self._names.clear()
        self._names[channel] = framed
        return framed

    def drop_links(self, why: str) -> None:
        """Cut every link (what is in flight on them fails); the next pipeline makes new
        ones."""
        links, self._links = self._links, {}
        for link in links.values():
            link.abort(why)

    async def close(self) -> None:
        """Answer what is queued and in flight (within :data:`COMMAND_TIMEOUT`), then cut the
        links; what is still queued fails."""
        if self._closed:
            return
        self._closed = True
        if (self._pending or self._in_flight) and self._loop is not None:
            self._drained = self._loop.create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained, self._timeout)
        self._stopped = True
        self.drop_links("the engine closed")
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await stop(task)
        _fail(self._pending, PublishFailed("the engine is closed"))
        self._pending = []
        if self._watchdog is not None:
            self._watchdog.cancel()


def _unreachable(target: str | None) -> Exception:
    return RedisConnectionError(f"cannot reach {target or 'Redis'}")


async def _awaited(what: Awaitable[None]) -> None:
    with contextlib.suppress(Exception):
        await what


def _ignore(_: Any) -> None:
    """The answer to ``ASKING``: the call after it answers for both."""


def _fail(items: list[_Queued], failure: PublishFailed) -> None:
    for item in items:
        _tell(item, failure)


def _tell(item: _Queued, outcome: Publication | BaseException) -> None:
    """Tell ``item``'s publisher how it went (a callback that raises is logged, the next
    publishers still told)."""
    try:
        item.done(outcome)
    except Exception:
        log.exception("answering a publication of %r failed", item.channel)


def _resolve(future: asyncio.Future[Publication], outcome: Publication | BaseException) -> None:
    """Settle ``future`` with ``outcome`` (:meth:`Publisher.queue`'s callback), unless it was
    cancelled."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
