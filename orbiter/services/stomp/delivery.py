"""MESSAGE frames to one STOMP client: publications (live or recovered) and queue messages.

A publication's MESSAGE is its subscription's head (``subscription``,
``message-id``, ``ack``) and the publication's tail, which the broker encodes
once for all its subscribers. A message for a subscription that acknowledges
is held (:class:`~.acks.Acks`) until its ACK or NACK. Queue messages take at
most half the outgoing buffer: a queue waits for a consumer that reads (flow
control) instead of cutting it as a slow consumer, and the rest of the buffer
is for topics and receipts; a queue message that does not fit stays in its queue.
"""

from __future__ import annotations

from typing import Protocol

from orbiter.model import Publication
from orbiter.protocol.stomp import escape
from orbiter.services.outbox import Outbox
from orbiter.services.stomp.acks import Acks
from orbiter.services.stomp.interfaces import SessionBroker
from orbiter.services.stomp.queues import QueuedMessage
from orbiter.services.stomp.subscription import Subscription


class Frames(Protocol):
    """The connection's output, as a delivery uses it (:class:`~.session.StompSession`)."""

    @property
    def closed(self) -> bool: ...

    @property
    def version(self) -> str | None: ...

    def put(self, data: bytes) -> None:
        """Queue a frame; past the outbox's limit, ERROR and close (a slow consumer)."""

    def offer(self, data: bytes) -> bool:
        """Queue a frame if the outbox has room for it; False (nothing queued) if not."""


class Delivery:
    __slots__ = ("_acks", "_broker", "_frames", "_max_queued", "_outbox")

    def __init__(self, frames: Frames, outbox: Outbox, broker: SessionBroker, acks: Acks) -> None:
        self._frames = frames
        self._outbox = outbox
        self._broker = broker
        self._acks = acks
        #: The bytes of queue messages the outbox may hold: half of it.
        self._max_queued = broker.config.limits.outgoing_buffer // 2

    def publication(self, sub: Subscription, pub: Publication, tail: bytes | None = None) -> None:
        """One MESSAGE of ``pub`` for ``sub`` (``tail``: its encoding, if already made)."""
        if tail is None:
            tail = self._broker.message_tail(pub, self._frames.version != "1.0")
        message_id = self._acks.next_id()
        head = sub.message_head(message_id)
        if sub.ack != "auto":
            self._acks.hold(sub, message_id, None)
        self._frames.put(head + tail)

    def queued(self, sub: Subscription, message: QueuedMessage) -> bool:
        """Queue one queue message for the client (a :class:`Consumer`'s ``offer``); False if
        the outgoing buffer has no room for it (it then stays in the queue)."""
        frames = self._frames
        if frames.closed:
            return False
        message_id = self._acks.next_id()
        version = frames.version or "1.0"
        headers = [f"destination:{escape(sub.destination, version)}"]
        if message.redelivered:
            headers.append("redelivered:true")
        for name, value in message.headers:
            headers.append(f"{escape(name, version)}:{escape(value, version)}")
        headers.append(f"content-length:{len(message.body)}")
        data = (
            sub.message_head(message_id)
            + "\n".join(headers).encode()
            + b"\n\n"
            + message.body
            + b"\x00"
        )
        if not frames.offer(data):
            return False  # stays in the queue, for this consumer once it reads, or another
        if sub.ack != "auto":
            self._acks.hold(sub, message_id, message)
        return True

    def can_take_queued(self) -> bool:
        """Room for queue messages: the connection is open and they hold at most half the
        outgoing buffer."""
        return not self._frames.closed and self._outbox.queued_bytes <= self._max_queued
