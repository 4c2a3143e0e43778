"""The node's STOMP broker: its sessions, queues, destination names, MESSAGE encoding.

Topics are channels: a STOMP subscription to ``<topic_prefix><name>`` is a
:class:`PubSub` subscription to ``<channel_prefix><name>``, and a ``SEND``
there is :meth:`PubSub.publish`, so STOMP, the HTTP API and the native
protocol share one delivery path and one order per channel. Queues are the
broker's own (:mod:`.queues`), local to this node, within the byte budgets of
``[stomp]``; while they hold messages, one timer sweeps out those past their
deadline every :data:`SWEEP_INTERVAL` seconds. On a node with a data directory
(the SQLite engine), ``persistent:true`` messages are also kept in the queue
file until consumed (:mod:`.durable_queue`; :meth:`StompBroker.start` queues
them again); elsewhere they are kept in memory like the others.

Connections count in the node's ``limits.max_connections`` /
``max_connections_per_ip`` (:meth:`orbiter.node.Node.admit`), as native
sessions do: one mechanism, one set of counters.

A publication is encoded once per escaping (1.0, or 1.1/1.2) for all the
STOMP subscribers it reaches (a channel's batch once for all of them, as one
of the batch's own framings: :meth:`StompBroker.message_tails`); each
subscriber adds only its few headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Protocol

from orbiter.auth import Authenticator
from orbiter.config.settings import Config
from orbiter.logs import Counters
from orbiter.model import Publication, TooManyConnections
from orbiter.protocol.stomp import Limits, escape
from orbiter.services.pubsub import PubSub
from orbiter.services.shared_batch import SharedBatch
from orbiter.services.stomp.bodies import body_of
from orbiter.services.stomp.durable_queue import DurableQueues, restore
from orbiter.services.stomp.interfaces import Destination
from orbiter.services.stomp.queues import QueueBook, QueuedMessage
from orbiter.services.stomp.session import StompSession

log = logging.getLogger("orbiter.stomp")

#: Seconds between two sweeps of the queues for messages past their deadline.
SWEEP_INTERVAL = 1.0


class DestinationError(ValueError):
    """A destination that names no topic or queue; the message says what would."""


class ConnectionLimits(Protocol):
    """The node's connection accounting (:class:`orbiter.node.Node`) and its counters."""

    counters: Counters

    def admit(self, peer: str) -> None: ...  # TooManyConnections past the limits

    def release(self, peer: str) -> None: ...


class StompBroker:
    def __init__(
        self,
        config: Config,
        pubsub: PubSub,
        auth: Authenticator,
        limits: ConnectionLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``limits``: the node's; without one (a broker on its own, in tests) connections
        are not limited and the counters are the broker's. ``clock`` (monotonic seconds,
        the event loop's in production) times queue deadlines, heart-beats and the
        connect timeout."""
        self.config = config
        self.clock = clock
        self._limits = limits
        #: Limit violations by name (the node's, shown at ``GET /api/stats``).
        self.counters = limits.counters if limits is not None else Counters()
        self.auth = auth
        self.settings = config.stomp
        self.pubsub = pubsub
        settings = self.settings
        self.queues = QueueBook(
            max_length=settings.max_queue_length,
            max_queues=settings.max_queues,
            max_queue_bytes=settings.max_queue_bytes,
            max_total_bytes=settings.max_total_queue_bytes,
            max_client_bytes=settings.max_client_queue_bytes,
            ttl=settings.message_ttl,
            clock=clock,
        )
        #: The queue sweep's next run, set while queues hold bytes.
        self._sweep: asyncio.TimerHandle | None = None
        #: Where ``persistent:true`` queue messages are kept: None without a data directory.
        self.durable: DurableQueues | None = None
        if config.engine.durable:
            self.durable = DurableQueues(config.engine.queue_file, config.engine.sync)
            self.queues.stored_gone = self._stored_gone
        self.sessions: set[StompSession] = set()
        self.frame_limits = Limits(
            max_headers=self.settings.max_headers,
            max_header_line=self.settings.max_header_line,
            max_body=config.limits.max_message_size,
        )
        #: Set while no session is open (shutdown waits on it).
        self._empty = asyncio.Event()
        self._empty.set()
        self._ids = itertools.count(1)
        self._cached: Publication | None = None
        self._cached_tails: dict[bool, bytes] = {}
        #: A batch's MESSAGE tails per escaping; each framing is its own
        #: :meth:`SharedBatch.framed` kind (this broker's topic names are in the bytes).
        self._tail_framings: dict[bool, Callable[[SharedBatch], list[bytes]]] = {
            escaped: partial(self._encode_tails, escaped) for escaped in (False, True)
        }

    async def start(self) -> None:
        """Open the queue file and queue its messages again (:class:`EngineUnavailable`)."""
        if self.durable is None:
            return
        messages = await self.durable.open()
        queued = restore(self.durable, self.queues, messages)
        if queued:
            log.info("%d persistent STOMP queue messages kept from the last run", queued)
            self.queued()

    def _stored_gone(self, message: QueuedMessage) -> None:
        if self.durable is not None:
            self.durable.delete(message.key)

    # ----------------------------------------------------------------- sessions

    def new_session(
        self, peer: str, transport: str, headers: Mapping[str, str] | None = None
    ) -> StompSession:
        """A session for a new connection; ``headers``: its HTTP request's, for app hooks."""
        session = StompSession(self, peer=peer, transport=transport, headers=headers)
        if self._limits is not None:
            try:
                self._limits.admit(peer)
            except TooManyConnections as exc:
                session.fail("too many connections", str(exc))
            else:
                session.admitted = True
        self.sessions.add(session)
        self._empty.clear()
        events = self.pubsub.events
        if events.info:  # the connection lines (orbiter/logs.py)
            events.opened(f"stomp-{transport}", peer, session.client_id)
        return session

    async def end_session(self, session: StompSession) -> None:
        """The transport is gone: unsubscribe ``session``, give back what it held."""
        try:
            await session.finish()
        finally:
            self.sessions.discard(session)
            if session.admitted and self._limits is not None:
                session.admitted = False
                self._limits.release(session.peer)
            if not self.sessions:
                self._empty.set()
            if self.pubsub.events.info:
                self._log_close(session)

    def _log_close(self, session: StompSession) -> None:
        """The close line of a STOMP connection (STOMP has no close codes: ``code`` is
        none, the reason is the ERROR frame's message, if the broker sent one)."""
        self.pubsub.events.closed(
            f"stomp-{session.transport}",
            session.peer,
            session.client_id,
            session.user,
            self.clock() - session.started,
            None,
            session.close_reason or "client went away",
        )

    def close_all(self, reason: str) -> None:
        for session in list(self.sessions):
            session.fail(reason)

    async def shutdown(self, reason: str, grace: float = 2.0) -> None:
        """ERROR every connection with ``reason``; cut those still open after ``grace`` s."""
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self.close_all(reason)
        for cut in (False, True):
            if cut:
                for session in list(self.sessions):
                    if session.abort is not None:
                        session.abort()
            if self.sessions:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._empty.wait(), grace)
        if self.sessions:
            log.warning("%d stomp connections still open at shutdown", len(self.sessions))
        if self.durable is not None:
            await self.durable.close()

    def next_id(self) -> str:
        return str(next(self._ids))

    # -------------------------------------------------------------------- queues

    def queued(self) -> None:
        """A queue took a message: make sure the sweep runs while queues hold bytes."""
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(SWEEP_INTERVAL, self._sweep_queues)

    def _sweep_queues(self) -> None:
        self._sweep = None
        freed = self.queues.sweep()
        if freed:
            log.debug("stomp queues: %d bytes of expired messages dropped", freed)
        if self.queues.bytes:
            self.queued()

    # -------------------------------------------------------------- destinations

    def destination(self, name: str) -> Destination:
        settings = self.settings
        if name.startswith(settings.topic_prefix) and len(name) > len(settings.topic_prefix):
            return "topic", settings.channel_prefix + name[len(settings.topic_prefix) :]
        if name.startswith(settings.queue_prefix) and len(name) > len(settings.queue_prefix):
            return "queue", name[len(settings.queue_prefix) :]
        raise DestinationError(
            f"unknown destination {name!r}: use {settings.topic_prefix}<name> (a channel) "
            f"or {settings.queue_prefix}<name> (a queue)"
        )

    def topic_name(self, channel: str) -> str:
        """The destination of ``channel`` (the inverse of :meth:`destination`)."""
        prefix = self.settings.channel_prefix
        return self.settings.topic_prefix + channel[len(prefix) :]

    # ------------------------------------------------------------------ encoding

    def message_tail(self, pub: Publication, escaped: bool) -> bytes:
        """A publication's MESSAGE headers after the per-subscriber ones, and its body.

        Computed once per publication (and escaping) for all its subscribers.
        """
        if pub is not self._cached:
            self._cached = pub
            self._cached_tails = {}
        tail = self._cached_tails.get(escaped)
        if tail is None:
            tail = self._cached_tails[escaped] = self._encode_tail(pub, escaped)
        return tail

    def message_tails(self, batch: SharedBatch, escaped: bool) -> list[bytes]:
        """:meth:`message_tail` of each publication of ``batch``, once per batch (and escaping).

        PubSub hands the same batch to every subscriber of its channel in turn.
        """
        frame = self._tail_framings[escaped]
        return batch.framed(frame, frame)

    def _encode_tails(self, escaped: bool, batch: SharedBatch) -> list[bytes]:
        return [self._encode_tail(pub, escaped) for pub in batch.pubs]

    def _encode_tail(self, pub: Publication, escaped: bool) -> bytes:
        version = "1.2" if escaped else "1.0"
        content_type, body = body_of(pub.data)
        # A publication's tags (a topic SEND's own headers) come after the MESSAGE's own.
        tags = (
            "".join(f"{escape(k, version)}:{escape(v, version)}\n" for k, v in pub.tags.items())
            if pub.tags
            else ""
        )
        head = (
            f"destination:{escape(self.topic_name(pub.channel), version)}\n"
            f"content-type:{escape(content_type, version)}\n"
            f"orbiter-offset:{pub.offset}\n"
            f"orbiter-epoch:{escape(pub.epoch, version)}\n"
            f"{tags}content-length:{len(body)}\n\n"
        )
        return head.encode() + body + b"\x00"
