"""One SUBSCRIBE of a STOMP connection: a topic or a queue, its ack mode, what it holds.

To a queue it is a :class:`~.queues.Consumer`: it has room while its
connection can take queue messages (:class:`QueueOutput`) and, in an
acknowledged mode, while it holds fewer than ``stomp.max_unacked``; what the
queue offers goes out through the connection.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

from orbiter.protocol.stomp import escape
from orbiter.services.recovery import Recovery
from orbiter.services.stomp.queues import QueuedMessage


class QueueOutput(Protocol):
    """Where a subscription's queue messages go: its connection's :class:`~.delivery.Delivery`."""

    def can_take_queued(self) -> bool:
        """The connection can take another queue message now."""

    def queued(self, sub: Subscription, message: QueuedMessage) -> bool:
        """Send ``message`` to ``sub``; False if there is no room (it stays in the queue)."""


@dataclass(eq=False, slots=True)
class Subscription:
    """One SUBSCRIBE: a topic (channel) or a queue, with its ack mode and unacked messages."""

    output: QueueOutput
    id: str
    destination: str
    kind: str
    #: The channel (topic) or the queue's name.
    target: str
    ack: str
    #: The connection's STOMP version (how the headers are escaped).
    version: str
    #: Unacknowledged messages it may hold (``stomp.max_unacked``).
    max_unacked: int
    #: Message-id -> the queued message (None for a topic's: nothing to redeliver).
    unacked: OrderedDict[str, QueuedMessage | None] = field(default_factory=OrderedDict)
    #: Live publications (and their MESSAGE tails) held back while history is read.
    recovery: Recovery[bytes] | None = None
    #: Every MESSAGE's first lines up to its message-id (the same for all its messages).
    head: bytes = b""
    #: MESSAGEs carry an ``ack`` header (STOMP 1.2, acknowledged modes).
    ack_header: bool = False

    def __post_init__(self) -> None:
        self.head = f"MESSAGE\nsubscription:{escape(self.id, self.version)}\nmessage-id:".encode()
        self.ack_header = self.ack != "auto" and self.version == "1.2"

    def message_head(self, message_id: str) -> bytes:
        """A MESSAGE's lines up to (and with) its ``ack`` header."""
        mid = message_id.encode()
        if self.ack_header:
            return self.head + mid + b"\nack:" + mid + b"\n"
        return self.head + mid + b"\n"

    # Consumer (queues)
    @property
    def acknowledges(self) -> bool:
        return self.ack != "auto"

    def has_room(self) -> bool:
        if not self.output.can_take_queued():
            return False
        return self.ack == "auto" or len(self.unacked) < self.max_unacked

    def offer(self, message: QueuedMessage) -> bool:
        return self.output.queued(self, message)
