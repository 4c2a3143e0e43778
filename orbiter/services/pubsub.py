"""Channels on this node: who is subscribed, publishing, fan-out, history, keys.

:class:`PubSub` is the one delivery path. Every route that publishes (the
native protocol, the HTTP API, Orbited ``event``) ends in
:meth:`PubSub.publish`; every publication the broker delivers is queued on
its channel by :meth:`PubSub._fan_out`. At the end of the event-loop
iteration (or, for a busy channel, after ``session.write_delay``) a pass
hands the channel's queued publications to every subscriber as one
:class:`SharedBatch` (:meth:`Subscriber.deliver_batch`), without awaiting:
a burst costs each subscriber one call. PubSub encodes nothing: each kind
of subscriber frames the batch once for all of its kind
(:meth:`SharedBatch.framed`), so a channel of STOMP subscribers alone is
never encoded for the native protocol. A channel of more than :data:`STEP`
subscribers is written to a step at a time, one step per loop iteration,
and what is published meanwhile joins the batches of the subscribers not
reached yet (:meth:`PubSub._step`).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from orbiter.config.settings import Config
from orbiter.engine.base import (
    Broker,
    HistoryPage,
    HistoryPolicy,
    Kept,
    PresenceStore,
    TooManyStreams,
)
from orbiter.logs import EventLog
from orbiter.model import JSON, ClientInfo, PresenceEvent, Publication, StreamPosition
from orbiter.protocol.keys import ConnectionKey
from orbiter.protocol.native import encode_presence
from orbiter.services.opening import Opening
from orbiter.services.shared_batch import SharedBatch

log = logging.getLogger("orbiter.pubsub")

BatchHandler = Callable[[SharedBatch], None]
#: Channels whose history policy :meth:`PubSub.policy` remembers.
_POLICY_MEMO = 65_536
#: One channel hand-over in this many is timed for :attr:`PubSub.latency_probe`.
LATENCY_SAMPLE = 16
#: A step with no bound on its subscribers (:meth:`PubSub._catch_up`).
_ALL = sys.maxsize


class Subscriber(Protocol):
    """What a channel needs from whoever subscribes to it (a client session)."""

    @property
    def client_id(self) -> str: ...

    @property
    def user(self) -> str | None: ...

    @property
    def info(self) -> JSON:
        """What the app attached to this client, shown in presence."""

    def deliver_batch(self, batch: SharedBatch) -> None:
        """Take the channel's publications it has not been given yet; must not block or await.

        The same batch goes to every subscriber it is due to: frame it with
        :meth:`SharedBatch.framed`, never alone.
        """

    def deliver_presence(self, channel: str, message: bytes) -> None:
        """Take one encoded join/leave push; must not block or await."""


class _Channel:
    __slots__ = (
        "base",
        "batches",
        "counted",
        "cursor",
        "flushed_at",
        "given",
        "name",
        "pass_head",
        "pass_started",
        "pubs",
        "ready",
        "scheduled",
        "snapshot",
        "subscribers",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        #: Each subscriber and the handler its batches go to.
        self.subscribers: dict[Subscriber, BatchHandler] = {}
        #: Open once the broker delivers this channel to the node.
        self.ready = Opening()
        #: Publications not yet handed to every subscriber; ``base`` counts those before
        #: them (the channel's publications are numbered from 1 on this node: ``pubs[i]``
        #: is number ``base + i + 1``).
        self.pubs: list[Publication] = []
        self.base = 0
        #: The number of the newest publication whose deliveries :attr:`PubSub.delivered`
        #: has settled (those after it are due to each of ``subscribers``).
        self.counted = 0
        #: A step of a pass is due (queued, on a timer or next in the loop).
        self.scheduled = False
        #: The pass under way (see :meth:`PubSub._step`): the subscribers it goes through,
        #: how far it is, the number of the newest publication when it started, and when.
        self.snapshot: list[tuple[Subscriber, BatchHandler]] | None = None
        self.cursor = 0
        self.pass_head = 0
        self.pass_started = 0.0
        #: While passes take more than one step: the number of the newest publication
        #: handed to each subscriber (one missing has everything up to ``base``).
        self.given: dict[Subscriber, int] | None = None
        #: The pass's batches so far, by what their subscribers had been given; for
        #: as long as no publication is added (a batch runs up to the newest one).
        self.batches: dict[int, SharedBatch] = {}
        #: The clock's time when its last batch had been written (-inf: none yet).
        self.flushed_at = float("-inf")


#: How many subscribers of a channel one step of a pass writes to; a larger channel
#: is written to over several loop iterations (see :meth:`PubSub._step`).
STEP = 256


def _retrieved(future: asyncio.Future[Publication]) -> None:
    """Nobody waits for this future: its failure, if any, is read (and so not logged)."""
    if not future.cancelled():
        future.exception()


def _log_failed(sub: Subscriber, batch: SharedBatch) -> None:
    """A subscriber failed to take a batch (a bug): logged, and the pass goes on."""
    log.exception("subscriber %s failed to take a batch of %r", sub.client_id, batch.channel)


class _Progress(enum.Enum):
    CAUGHT_UP = 1
    MID_PASS = 2
    BEHIND = 3


_CAUGHT_UP = _Progress.CAUGHT_UP


class PubSub:
    def __init__(
        self,
        config: Config,
        broker: Broker,
        presence: PresenceStore,
        counters: Counter[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock``: monotonic seconds, the event loop's in production (the write delay
        is timed by the loop's timers)."""
        self._config = config
        #: Monotonic seconds; the sessions on this PubSub read it too (the publish rate).
        self.clock = clock
        #: Refusals by name (the node's, shown at ``/api/stats``): ``limit_channels``.
        self._counters: Counter[str] = counters if counters is not None else Counter()
        self._broker = broker
        #: The engine may publish without suspending (:meth:`Broker.publish_at_once` is its
        #: own, not the base's None): else that is not asked, once per publication.
        self._at_once = type(broker).publish_at_once is not Broker.publish_at_once
        self._presence = presence
        self._channels: dict[str, _Channel] = {}
        self._write_delay = config.session.write_delay
        #: A channel whose last batch was written less than this long ago is busy (see
        #: :meth:`_fan_out`); -inf: none is (no write delay).
        self._busy_within = 2 * self._write_delay if self._write_delay > 0 else -math.inf
        #: Each recent channel's history policy (the config does not change while running).
        self._policies: dict[str, HistoryPolicy] = {}
        #: Channels with publications waiting: for the end of this loop iteration, and
        #: (busy channels, see :meth:`_fan_out`) for ``write_delay`` (one timer for all).
        self._dirty: list[_Channel] = []
        self._delayed: list[_Channel] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Debug lines of subscribes and publishes (orbiter/logs.py): one flag test when off.
        self.events = EventLog(payloads=config.log.payloads)
        #: Publications this node's routes published: a plain count, read by ``GET /metrics``.
        self.published = 0
        #: Deliveries (:attr:`delivered`) of the channels' publications up to their ``counted``.
        self._delivered_settled = 0
        #: Set by ``GET /metrics`` (orbiter/http/metrics.py): called with the oldest
        #: publication's ``time`` of one hand-over in :data:`LATENCY_SAMPLE`.
        self.latency_probe: Callable[[float], None] | None = None
        self._probe_in = LATENCY_SAMPLE
        broker.set_handlers(self._fan_out, self._fan_out_presence)
        # This node's share of the cluster-wide answers (other nodes' surveys).
        broker.set_answerer("channels", lambda _: dict(self.local_channels()))
        broker.set_answerer("subscribers", lambda channel: self.subscriber_count(str(channel)))

    @property
    def delivered(self) -> int:
        """Publications due to subscribers here: one per subscriber the channel had when
        the publication arrived, read by ``GET /metrics``.

        Derived when read, not counted per publication: each channel numbers its
        publications anyway (``base``), and whatever came since its subscribers last
        changed is due to each of them (:meth:`_settle_deliveries`).
        """
        return self._delivered_settled + sum(
            (entry.base + len(entry.pubs) - entry.counted) * len(entry.subscribers)
            for entry in self._channels.values()
        )

    def _settle_deliveries(self, entry: _Channel) -> None:
        """Count the deliveries of ``entry``'s publications so far: its subscribers change."""
        head = entry.base + len(entry.pubs)
        self._delivered_settled += (head - entry.counted) * len(entry.subscribers)
        entry.counted = head

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
        if self.events.debug:
            self.events.subscribed(sub.client_id, channel)
        entry = self._channels.get(channel)
        if entry is None:
            entry = self._channels[channel] = _Channel(channel)
            entry.subscribers[sub] = sub.deliver_batch

            def forget() -> None:
                if self._channels.get(channel) is entry:
                    self._settle_deliveries(entry)
                    del self._channels[channel]

            await entry.ready.run(self._broker.subscribe(channel), forget)
        else:
            if entry.pubs or entry.counted != entry.base:  # (else nothing to settle)
                self._settle_deliveries(entry)
            entry.subscribers[sub] = sub.deliver_batch
            await entry.ready.wait()
        if not self._config.rule_for(channel).presence:
            return  # not tracked: no presence round trip (on Redis) for such a channel
        info = ClientInfo(sub.client_id, sub.user, sub.info)
        if await self._presence.add(channel, info):
            await self._broker.publish_presence(PresenceEvent(channel, True, info))

    async def unsubscribe(self, sub: Subscriber, channel: str) -> None:
        entry = self._channels.get(channel)
        if entry is None or sub not in entry.subscribers:
            return
        if self.events.debug:
            self.events.unsubscribed(sub.client_id, channel)
        if entry.pubs or entry.counted != entry.base:
            self._settle_deliveries(entry)
        del entry.subscribers[sub]
        if entry.given is not None:
            entry.given.pop(sub, None)
        if not entry.subscribers:
            del self._channels[channel]
            if entry.ready.open:
                await self._broker.unsubscribe(channel)
        if not self._config.rule_for(channel).presence:
            return
        left = await self._presence.remove(channel, sub.client_id)
        if left is not None:
            await self._broker.publish_presence(PresenceEvent(channel, False, left))

    async def publish(
        self, channel: str, data: JSON, tags: dict[str, str] | None = None
    ) -> Publication:
        """Publish to ``channel``.

        ``tags`` (checked by :func:`orbiter.protocol.native.validate_tags`) go with it.
        A publication that would open a channel past ``limits.max_channels`` raises
        :class:`TooManyStreams`, counted here (``limit_channels``) for every route;
        the routes only answer it in their protocol.
        """
        if self.events.debug:
            self.events.published(channel, data, tags)
        try:
            pub = await self._broker.publish(channel, data, self.policy(channel), tags)
        except TooManyStreams:
            self._counters["limit_channels"] += 1
            raise
        self.published += 1
        return pub

    def publish_at_once(
        self, channel: str, data: JSON, tags: dict[str, str] | None = None
    ) -> Publication | None:
        """Publish without suspending, if the engine can; else None (then await :meth:`publish`).

        Refused and counted as :meth:`publish` is.
        """
        if not self._at_once:
            return None
        policy = self._policies.get(channel) or self.policy(channel)
        try:
            pub = self._broker.publish_at_once(channel, data, policy, tags)
        except TooManyStreams:
            self._counters["limit_channels"] += 1
            raise
        if pub is not None:
            self.published += 1
            if self.events.debug:
                self.events.published(channel, data, tags)
        return pub

    def publish_soon(
        self, channel: str, data: JSON, tags: dict[str, str] | None = None
    ) -> asyncio.Future[Publication] | None:
        """Queue a publication if the engine queues them (:meth:`Broker.publish_soon`):
        its future; else None (then await :meth:`publish`). Refused and counted as
        :meth:`publish` is."""
        policy = self._policies.get(channel) or self.policy(channel)
        try:
            queued = self._broker.publish_soon(channel, data, policy, tags)
        except TooManyStreams:
            self._counters["limit_channels"] += 1
            raise
        if queued is not None:
            self._queued(channel, data, tags)
        return queued

    def publish_then(
        self, channel: str, data: JSON, tags: dict[str, str] | None, done: Kept
    ) -> bool:
        """Queue a publication if the engine queues them (:meth:`Broker.publish_then`): True,
        and ``done`` is told how it went as soon as the engine knows; else False (then
        await :meth:`publish`). Refused and counted as :meth:`publish` is."""
        policy = self._policies.get(channel) or self.policy(channel)
        try:
            queued = self._broker.publish_then(channel, data, policy, tags, done)
        except TooManyStreams:
            self._counters["limit_channels"] += 1
            raise
        if queued:
            self._queued(channel, data, tags)
        return queued

    def _queued(self, channel: str, data: JSON, tags: dict[str, str] | None) -> None:
        """Count (and log) a publication the engine queued."""
        self.published += 1
        if self.events.debug:
            self.events.published(channel, data, tags)

    async def event(self, keys: Iterable[ConnectionKey], data: JSON) -> list[Publication]:
        """Orbited's ``event(keys, message)``: publish to each key's channel, in order.

        On an engine that queues publications every key's is queued before any is
        awaited, so they share a commit; a failure is raised once all are done (the
        others are published all the same).
        """
        keys = list(keys)
        queued: list[asyncio.Future[Publication]] = []
        try:
            for key in keys:
                future = self.publish_soon(key.channel, data)
                if future is None:  # an engine that does not queue (it never does)
                    break
                queued.append(future)
        except BaseException:  # refused midway (limit_channels): the queued still go out
            for future in queued:
                future.add_done_callback(_retrieved)
            raise
        if len(queued) < len(keys):
            return [await self.publish(key.channel, data) for key in keys]
        done = await asyncio.gather(*queued, return_exceptions=True)
        for result in done:
            if isinstance(result, BaseException):
                raise result
        return [result for result in done if isinstance(result, Publication)]

    async def history(
        self, channel: str, since: StreamPosition | None = None, limit: int | None = None
    ) -> HistoryPage:
        return await self._broker.history(channel, since, self.policy(channel), limit)

    async def history_before(self, channel: str, before: int, limit: int) -> HistoryPage:
        """A page further back: the newest ``limit`` publications older than ``before``."""
        return await self._broker.history_before(channel, before, self.policy(channel), limit)

    async def channels(self) -> dict[str, int]:
        """Every channel with a subscriber on any node, and their number."""
        counts = self.local_channels()
        if self._broker.clustered:
            for answer in (await self._broker.survey("channels", None)).answers:
                if isinstance(answer, dict):
                    for name, count in answer.items():
                        counts[name] = counts.get(name, 0) + int(count)
        return counts

    async def subscribers(self, channel: str) -> int:
        """The number of ``channel``'s subscribers on every node."""
        count = self.subscriber_count(channel)
        if self._broker.clustered:
            answers = (await self._broker.survey("subscribers", channel)).answers
            count += sum(answer for answer in answers if isinstance(answer, int))
        return count

    async def reachable(self, channels: list[str]) -> set[str]:
        """Those of ``channels`` with a subscriber on some node (Orbited keys connected)."""
        here = {channel for channel in channels if self.subscriber_count(channel) > 0}
        rest = [channel for channel in channels if channel not in here]
        if rest and self._broker.clustered:
            here |= await self._broker.subscribed(rest)
        return here

    def local_channels(self) -> dict[str, int]:
        """Every channel with a subscriber on this node, and their number."""
        return {name: len(entry.subscribers) for name, entry in self._channels.items()}

    async def presence(self, channel: str) -> dict[str, Any]:
        """Who is on ``channel``: one entry per user (however many tabs), and counts.

        Only channels whose rule has presence on are tracked; another one answers
        its number of subscribers and no users.
        """
        if not self._config.rule_for(channel).presence:
            return {"channel": channel, "clients": await self.subscribers(channel), "users": []}
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
        """Channels with at least one subscriber on this node (``subscribed_channels``
        at ``GET /api/stats``; the engine's stored streams are what ``limits.max_channels``
        bounds)."""
        return len(self._channels)

    def _fan_out(self, pub: Publication) -> None:
        """Queue a publication for its channel's subscribers.

        The channel's first step goes at the end of this loop iteration,
        unless the channel is busy: one whose last batch was written less
        than ``2 * write_delay`` seconds ago waits ``write_delay`` for more
        publications to join its batch. Waiting pays only where publications
        come that often (a subscriber then gets several in one write); on a
        quiet channel it would only add latency, and bunch many channels'
        writes into one burst, which costs more per write than writes spread
        over the loop's iterations (measured: ``docs/benchmarks.md``, "Parts
        chosen by measurement").
        """
        entry = self._channels.get(pub.channel)
        if entry is None:
            return
        entry.pubs.append(pub)
        if entry.scheduled:
            return
        entry.scheduled = True
        if self.clock() - entry.flushed_at < self._busy_within:
            if not self._delayed:
                self._event_loop().call_later(self._write_delay, self._flush_delayed)
            self._delayed.append(entry)
        else:
            if not self._dirty:
                self._event_loop().call_soon(self._flush_dirty)
            self._dirty.append(entry)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:  # asyncio.get_running_loop() costs a getpid() system call
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def _flush_dirty(self) -> None:
        dirty, self._dirty = self._dirty, []
        self._flush(dirty)

    def _flush_delayed(self) -> None:
        delayed, self._delayed = self._delayed, []
        self._flush(delayed)

    def _flush(self, entries: list[_Channel]) -> None:
        """Run the channels' due steps: for most, the whole hand-over (one clock read for all).

        Each channel's hand-over counts for :data:`LATENCY_SAMPLE`; the one that reaches it
        is timed once the flush is over.
        """
        now = self.clock()
        timed = None
        self._probe_in -= len(entries)
        if self._probe_in <= 0:  # (past it by some: the next is due as much sooner)
            self._probe_in = self._probe_in % LATENCY_SAMPLE or LATENCY_SAMPLE
            if entries[0].pubs:
                timed = entries[0].pubs[0]
        for entry in entries:
            if self._step(entry, STEP) is _CAUGHT_UP:
                entry.scheduled = False
                entry.flushed_at = now
            else:
                self._schedule_step(entry)
        if timed is not None and self.latency_probe is not None:
            self.latency_probe(timed.time)

    def _run_step(self, entry: _Channel) -> None:
        """A step after the first of a channel's passes (see :meth:`_step`)."""
        if self._step(entry, STEP) is _CAUGHT_UP:
            entry.scheduled = False
            entry.flushed_at = self.clock()
        else:
            self._schedule_step(entry)

    def _schedule_step(self, entry: _Channel) -> None:
        """Subscribers are still behind: the next step, at once mid-pass, else after the
        write delay (publications came during the pass)."""
        loop = self._event_loop()
        if entry.snapshot is not None:  # mid-pass
            loop.call_soon(self._run_step, entry)
            return
        # The next pass starts ``write_delay`` after this one did, or at once if this one
        # took longer.
        wait = entry.pass_started + self._write_delay - self.clock()
        if wait > 0:
            loop.call_later(wait, self._run_step, entry)
        else:
            loop.call_soon(self._run_step, entry)

    def _step(self, entry: _Channel, limit: int) -> _Progress:
        """Hand the channel's publications to the next ``limit`` subscribers.

        A pass goes through the channel's subscribers in order, giving each
        what it has not been given, as one :class:`SharedBatch` shared by
        every subscriber that has been given the same. A channel of at most
        :data:`STEP` subscribers is written to in one go; a larger one over
        several loop iterations, so that publications arriving meanwhile
        (read between steps) join the batches of the subscribers the pass
        has not reached yet, and those it has passed get them in the next
        pass. A publication then waits for at most about one pass, instead
        of the end of the pass under way and then a whole pass of its own.
        Subscribers who join during a pass are in the next one.
        """
        subscribers = entry.subscribers
        pubs = entry.pubs
        if not pubs or not subscribers:
            self._end_passes(entry)
            return _CAUGHT_UP
        if entry.given is None and len(subscribers) <= limit:  # (no pass under way either)
            # The whole pass in one go: every subscriber has everything up to ``base``.
            batch = SharedBatch(entry.name, pubs)
            entry.pubs = []
            entry.base += len(pubs)
            # A handler never unsubscribes synchronously (closing only marks the session).
            for sub, handler in subscribers.items():
                try:
                    handler(batch)
                except Exception:
                    _log_failed(sub, batch)
            return _CAUGHT_UP
        head = entry.base + len(pubs)
        if entry.snapshot is None:
            entry.snapshot = list(subscribers.items())
            entry.cursor = 0
            entry.pass_head = head
            entry.pass_started = self.clock()
            if entry.given is None:
                entry.given = {}
        snapshot, given, base = entry.snapshot, entry.given, entry.base
        assert given is not None
        start = entry.cursor
        end = min(len(snapshot), start + limit)
        batches = entry.batches
        if batches and next(iter(batches.values())).pubs[-1] is not entry.pubs[-1]:
            batches.clear()  # publications came since: batches now run further
        for sub, handler in snapshot[start:end]:
            if subscribers.get(sub) is not handler:
                continue  # left since the pass started
            have = given.get(sub, base)
            if have >= head:
                continue
            shared = batches.get(have)
            if shared is None:
                skip = have - base
                shared = batches[have] = SharedBatch(entry.name, entry.pubs[skip:])
            try:
                handler(shared)
            except Exception:
                _log_failed(sub, shared)
            given[sub] = head
        entry.cursor = end
        if end < len(snapshot):
            return _Progress.MID_PASS
        # The pass is over: every subscriber has at least what there was when it started.
        entry.snapshot = None
        batches.clear()
        done = entry.pass_head - base
        if done:  # a hand-over (those of a flush are counted there)
            self._probe_in -= 1
            if self._probe_in <= 0:
                self._sample(entry.pubs[0])
        del entry.pubs[:done]
        entry.base = entry.pass_head
        if entry.pubs:
            return _Progress.BEHIND
        self._end_passes(entry)
        return _CAUGHT_UP

    def _sample(self, oldest: Publication) -> None:
        """Every :data:`LATENCY_SAMPLE`-th hand-over of a pass of several steps (counted
        down in ``_probe_in`` by the caller, so the others cost no call and no clock read)
        is timed, if measured (a flush's, in :meth:`_flush`)."""
        self._probe_in = LATENCY_SAMPLE
        if self.latency_probe is not None:
            self.latency_probe(oldest.time)

    @staticmethod
    def _end_passes(entry: _Channel) -> None:
        """Everyone has everything (or nobody is left): forget the passes' bookkeeping."""
        entry.snapshot, entry.given = None, None
        entry.batches.clear()
        entry.base += len(entry.pubs)
        entry.pubs = []

    def _catch_up(self, entry: _Channel) -> None:
        """Hand every subscriber everything now (a step already due stays due, and finds
        nothing left to do)."""
        while self._step(entry, _ALL) is not _CAUGHT_UP:
            pass

    def _fan_out_presence(self, event: PresenceEvent) -> None:
        entry = self._channels.get(event.channel)
        if entry is None:
            return
        self._catch_up(entry)  # publications before the join/leave stay before it
        message = encode_presence(event)
        for sub in entry.subscribers:
            sub.deliver_presence(event.channel, message)
