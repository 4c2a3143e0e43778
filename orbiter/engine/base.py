"""Engine interfaces: the only way the layers above reach shared state.

- :class:`Broker` carries publications between nodes and keeps each
  channel's stream (epoch, offsets, bounded history). Publishing and
  appending to history are one operation, so that offsets and delivery
  order agree in every engine.
- :class:`PresenceStore` knows which clients are subscribed to which channel.

The memory implementation (``engine/memory.py``) and the SQLite one
(``engine/sqlite.py``, the same on a data file that survives restarts) serve
one process; a Redis implementation serves many nodes behind the same
interfaces. The contract tests in ``tests/engine/`` run against every
implementation.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from orbiter.model import JSON, ClientInfo, PresenceEvent, Publication, StreamPosition


@dataclass(frozen=True, slots=True)
class HistoryPolicy:
    """How much of a channel's stream to keep."""

    size: int
    ttl: float
    #: How long the stream's epoch and offset outlive its last activity.
    meta_ttl: float


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Publications read from a channel's stream.

    ``recoverable`` is True when ``publications`` holds every publication
    after the requested position, so a client at that position can catch
    up exactly; it is False when history was trimmed past it, or the epoch
    is not the stream's current one.
    """

    position: StreamPosition
    publications: list[Publication]
    recoverable: bool


class TooManyStreams(Exception):
    """The engine keeps as many channel streams as it may (``limits.max_channels``):
    opening another one (a first publication) is refused."""


class PublishFailed(Exception):
    """The engine could not keep a publication (a full disk, an I/O error): it was
    neither delivered nor kept, and the publisher must be told so, never OK."""


class EngineUnavailable(Exception):
    """The engine cannot start (a damaged or unreadable data file), or cannot be reached
    now (Redis down): the message says which and what to do; a client's command that
    met it is answered with that message."""


#: Called by the broker, on the event loop, for each publication on a
#: channel this node subscribed to, in offset order.
PublicationHandler = Callable[[Publication], None]
#: Called by the broker for each presence event on a subscribed channel.
PresenceHandler = Callable[[PresenceEvent], None]
#: Told, on the event loop, how a publication queued by :meth:`Broker.publish_then` went:
#: the publication once the engine kept it, or why it could not (:class:`PublishFailed`).
Kept = Callable[[Publication | BaseException], None]


#: Seconds :meth:`Broker.check` waits for the engine to answer.
CHECK_TIMEOUT = 2.0

#: What a node answers other nodes' surveys of one kind with (:meth:`Broker.set_answerer`):
#: called with the survey's argument, on the event loop; must not block.
Answerer = Callable[[JSON], JSON]


@dataclass(frozen=True, slots=True)
class Survey:
    """What the other nodes of a cluster answered (:meth:`Broker.survey`)."""

    #: Nodes alive in the cluster, this one included (1 on an engine of one process).
    nodes: int
    #: The answer of each other node that answered in time.
    answers: list[JSON]


class Broker(abc.ABC):
    """Publishes to channels and delivers publications to subscribed nodes."""

    #: The node's handlers (:meth:`set_handlers`), None until set.
    _on_publication: PublicationHandler | None = None
    _on_presence: PresenceHandler | None = None

    def set_handlers(self, publication: PublicationHandler, presence: PresenceHandler) -> None:
        """Set the functions that receive this node's publications and presence events."""
        self._on_publication = publication
        self._on_presence = presence

    #: True when other nodes may share the channels (their answers come by :meth:`survey`).
    clustered = False

    def set_answerer(self, kind: str, answerer: Answerer) -> None:
        """Answer other nodes' surveys of ``kind`` with ``answerer`` (this node's share)."""
        self.__dict__.setdefault("_answerers", {})[kind] = answerer

    def answer(self, kind: str, argument: JSON) -> JSON:
        """This node's answer to a survey of ``kind`` (None if it has no answerer for it)."""
        answerer = self.__dict__.get("_answerers", {}).get(kind)
        return None if answerer is None else answerer(argument)

    async def survey(self, kind: str, argument: JSON) -> Survey:
        """Ask every other node of the cluster for its answer to ``kind``; an engine of one
        process has no other node. Never raises: a node that does not answer in time (or
        an engine that cannot be reached) gives fewer answers than :attr:`Survey.nodes`."""
        return Survey(1, [])

    async def subscribed(self, channels: list[str]) -> set[str]:
        """Those of ``channels`` that some node (this one or another) has subscribers on."""
        return set()

    @abc.abstractmethod
    async def start(self) -> None:
        """Begin background work (expiry, connections)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop background work and release resources."""

    async def check(self) -> str | None:
        """None if the engine can keep and deliver publications now, else why not (one
        line naming no secret; for ``/health/ready``); answers within :data:`CHECK_TIMEOUT`."""
        return None

    @abc.abstractmethod
    async def subscribe(self, channel: str) -> None:
        """From now on, deliver ``channel``'s publications to this node."""

    @abc.abstractmethod
    async def unsubscribe(self, channel: str) -> None:
        """Stop delivering ``channel``'s publications to this node."""

    @abc.abstractmethod
    async def publish(
        self, channel: str, data: JSON, policy: HistoryPolicy, tags: dict[str, str] | None = None
    ) -> Publication:
        """Append to the channel's stream and deliver; returns the publication."""

    def publish_at_once(
        self, channel: str, data: JSON, policy: HistoryPolicy, tags: dict[str, str] | None = None
    ) -> Publication | None:
        """:meth:`publish` without suspending, if this engine can: the publication, or None.

        None means nothing was published and :meth:`publish` must be awaited
        (an engine that talks to a server always answers None; the memory
        engine never does). A route that publishes many messages from one
        read calls this first, so that it makes no coroutine per message.
        """
        return None

    def publish_soon(
        self, channel: str, data: JSON, policy: HistoryPolicy, tags: dict[str, str] | None = None
    ) -> asyncio.Future[Publication] | None:
        """Queue a publication without suspending, if this engine queues them: its future.

        The future's result is the publication once the engine kept it (or
        :class:`PublishFailed`); publications queued one after another are kept
        in that order, and may be committed together (the SQLite engine's group
        commit), so a route with several to publish queues them all before it
        waits. None means nothing was queued and :meth:`publish` must be awaited.
        """
        return None

    def publish_then(
        self,
        channel: str,
        data: JSON,
        policy: HistoryPolicy,
        tags: dict[str, str] | None,
        done: Kept,
    ) -> bool:
        """:meth:`publish_soon` with a callback instead of a future: True once queued.

        ``done`` is then called once, on the loop (never within this call), with
        the publication once kept or the exception, as soon as the engine knows: the
        SQLite engine calls it in the iteration that learns of the commit, where a
        future's callbacks would run one iteration later (the route answering from it
        answers an iteration sooner). False means nothing was queued and
        :meth:`publish` must be awaited. By default it waits on :meth:`publish_soon`'s
        future (its done-callback).
        """
        future = self.publish_soon(channel, data, policy, tags)
        if future is None:
            return False
        future.add_done_callback(partial(_tell, done))
        return True

    def flush(self) -> None:
        """Start keeping what :meth:`publish_soon` queued now, not at the next loop iteration.

        A route calls this once the publications of one read are all queued
        (the fast HTTP publish path, the native WebSocket's read), so their
        commit starts in that read's iteration: the answers, which wait for the
        commit, come an iteration sooner. It changes what is kept together, not
        when a publication counts as kept. An engine may also report the commit
        within this call (the SQLite engine waits for it a bounded time): the
        publications' futures are then done, and :meth:`publish_then`'s callbacks
        called, before it returns, so a route calls it once ready for them (its
        earlier answers written). The default does nothing.
        """
        return None

    def stats(self) -> dict[str, int]:
        """What the engine keeps now, for ``GET /api/stats``: ``channels`` (streams
        stored) and ``history_bytes`` (counted against ``history.max_bytes``),
        where the engine knows them cheaply."""
        return {}

    @abc.abstractmethod
    async def publish_presence(self, event: PresenceEvent) -> None:
        """Deliver a join or leave to every node subscribed to the channel (no history)."""

    @abc.abstractmethod
    async def history(
        self,
        channel: str,
        since: StreamPosition | None,
        policy: HistoryPolicy,
        limit: int | None = None,
    ) -> HistoryPage:
        """Publications after ``since`` (or the newest ``limit`` if ``since`` is None).

        Oldest first. Also reports the stream's current position. Reading
        never creates a stream: a channel never published to reads as offset 0
        of an epoch that its first publication keeps (unless the engine lost
        streams meanwhile), so readers store nothing.
        """

    @abc.abstractmethod
    async def history_before(
        self, channel: str, before: int, policy: HistoryPolicy, limit: int
    ) -> HistoryPage:
        """The newest ``limit`` retained publications older than offset ``before``,
        oldest first: a page further back in history (``/api/history?before=``).

        Reports the stream's current position; ``recoverable`` says the page holds
        every publication from its first offset up to ``before - 1`` (an empty
        page: there is nothing retained before ``before``). Stores nothing.
        """


def _tell(done: Kept, future: asyncio.Future[Publication]) -> None:
    """Tell ``done`` what ``future`` gave (:meth:`Broker.publish_then`'s default)."""
    if future.cancelled():
        done(PublishFailed("the publication was cancelled"))
        return
    error = future.exception()
    done(future.result() if error is None else error)


class PresenceStore(abc.ABC):
    """Which clients are subscribed to each channel, and as which users.

    Presence is live state, never persisted, and every entry expires: it lives
    a TTL (30 s by default) after it was added or last refreshed, and one not
    refreshed within it disappears from every answer. While a node runs, its
    store refreshes the entries of its node's clients (added and not removed)
    in bulk on a timer (every TTL / 3; never per message or per publication),
    so an entry outlives its client only when its node stops or dies without
    removing it, and then by at most the TTL. On Redis that is what takes a dead
    node's clients out of presence; the memory and SQLite engines' entries are
    their own process's and go with it, and keep the same contract.
    """

    @abc.abstractmethod
    async def add(self, channel: str, info: ClientInfo) -> bool:
        """Record a client; True if it is its user's first client on the channel."""

    @abc.abstractmethod
    async def remove(self, channel: str, client: str) -> ClientInfo | None:
        """Forget a client; its info if that was its user's last client there."""

    @abc.abstractmethod
    async def clients(self, channel: str) -> list[ClientInfo]: ...

    @abc.abstractmethod
    async def channels(self) -> dict[str, int]:
        """Every channel with at least one client, and its number of clients."""

    async def close(self) -> None:
        """Stop background work and release resources (nothing to do by default)."""
        return None
