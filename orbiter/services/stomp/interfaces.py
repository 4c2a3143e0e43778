"""What the parts of a STOMP session see of their broker and of their connection.

The broker makes sessions, so it alone imports them; a session and its parts
(:mod:`.subscriptions`, :mod:`.sending`) see the broker as a
:class:`SessionBroker` (what :class:`~.broker.StompBroker` is) and the
session as a :class:`Connection` (what :class:`~.session.StompSession` is).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal, Protocol

from orbiter.auth import Authenticator
from orbiter.config.settings import Config
from orbiter.config.stomp import StompSettings
from orbiter.logs import Counters
from orbiter.model import Publication
from orbiter.protocol.stomp import Limits
from orbiter.services.pubsub import PubSub, Subscriber
from orbiter.services.shared_batch import SharedBatch
from orbiter.services.stomp.durable_queue import DurableQueues
from orbiter.services.stomp.identity import StompIdentity
from orbiter.services.stomp.queues import QueueBook

#: Where a destination header points: a topic (an orbiter channel) or a queue, and its name.
Destination = tuple[Literal["topic", "queue"], str]


class SessionBroker(Protocol):
    """What a session uses of the broker that made it (:class:`~.broker.StompBroker`)."""

    config: Config
    settings: StompSettings
    auth: Authenticator
    pubsub: PubSub
    queues: QueueBook
    #: Where ``persistent:true`` queue messages are kept (None: in memory only).
    durable: DurableQueues | None
    #: Limit violations by name.
    counters: Counters
    frame_limits: Limits
    #: Monotonic seconds (the event loop's clock in production).
    clock: Callable[[], float]

    def next_id(self) -> str:
        """A new id, unique in the broker (sessions, queued messages)."""

    def queued(self) -> None:
        """A message went into a queue (queues now hold bytes to sweep)."""

    def destination(self, name: str) -> Destination:
        """What a destination header names; ``ValueError`` saying why if nothing."""

    def message_tail(self, pub: Publication, escaped: bool) -> bytes:
        """The part of ``pub``'s MESSAGE frame after the subscription header."""

    def message_tails(self, batch: SharedBatch, escaped: bool) -> list[bytes]:
        """:meth:`message_tail` of each of ``batch``'s publications."""


class Connection(Subscriber, Protocol):
    """What a session's parts use of their connection (:class:`~.session.StompSession`):
    the PubSub subscriber it is, where it comes from, who it is, and the STOMP version it
    speaks."""

    @property
    def peer(self) -> str:
        """The client's address, as the node's connection limits count it (behind a
        trusted proxy, the forwarded client's)."""

    @property
    def version(self) -> str | None:
        """The negotiated STOMP version; None until CONNECT."""

    @property
    def identity(self) -> StompIdentity | None:
        """Who CONNECT said it is; None until then."""

    @property
    def headers(self) -> Mapping[str, str]:
        """Its HTTP request's headers (for the app's hooks)."""
