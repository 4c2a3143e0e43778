"""One STOMP connection's MESSAGE ids and the messages awaiting ACK or NACK, without I/O.

Each MESSAGE gets the id ``<session id>-<n>``. One sent to a subscription in
``client`` or ``client-individual`` mode is held until the client ACKs or
NACKs it (in ``client`` mode one ACK covers the subscription's earlier
messages too): a queue's acknowledged messages are consumed, its NACKed ones
go back to the queue; a topic's are only forgotten, and a subscription keeps
the newest ``stomp.max_unacked`` of them. An ACK of a message this
connection sent but no longer holds is ignored; of any other id, refused.
"""

from __future__ import annotations

from orbiter.protocol.stomp import Frame
from orbiter.services.stomp.errors import StompError
from orbiter.services.stomp.queues import QueueBook, QueuedMessage
from orbiter.services.stomp.subscription import Subscription


class Acks:
    __slots__ = ("_prefix", "_sent", "_unacked", "max_unacked")

    def __init__(self, prefix: str, max_unacked: int) -> None:
        self._prefix = prefix
        self.max_unacked = max_unacked
        #: MESSAGEs sent so far (the number in the last id).
        self._sent = 0
        #: Message-id -> subscription, for every message awaiting ACK/NACK.
        self._unacked: dict[str, Subscription] = {}

    def next_id(self) -> str:
        """The id of the next MESSAGE."""
        self._sent += 1
        return f"{self._prefix}-{self._sent}"

    def hold(self, sub: Subscription, message_id: str, message: QueuedMessage | None) -> None:
        """Keep a message sent to ``sub`` (in an acknowledged mode) until its ACK or NACK."""
        sub.unacked[message_id] = message
        self._unacked[message_id] = sub
        if message is None and len(sub.unacked) > self.max_unacked:
            # A topic's unacknowledged messages are not redelivered; only the newest are kept.
            old, _ = sub.unacked.popitem(last=False)
            self._unacked.pop(old, None)

    def acknowledge(self, frame: Frame, version: str, queues: QueueBook, *, nack: bool) -> None:
        """Carry out an ACK (or NACK) frame of a connection speaking ``version``."""
        header = "id" if version == "1.2" else "message-id"
        message_id = frame.get(header)
        if not message_id:
            raise StompError(
                "missing header",
                f"an {frame.command} frame needs a {header} header (STOMP {version})",
            )
        sub = self._unacked.get(message_id)
        if sub is None:
            if self._was_sent(message_id):
                # Sent here, no longer held: a topic's past stomp.max_unacked (only the
                # newest are kept, never redelivered) or one already acknowledged.
                return
            raise StompError(
                "unknown message",
                f"{frame.command} of {message_id!r}: no message with that id awaits "
                "acknowledgement on this connection",
            )
        if version == "1.1" and frame.get("subscription") not in (None, sub.id):
            raise StompError(
                "unknown message", f"message {message_id!r} is not from that subscription"
            )
        done: list[QueuedMessage | None] = []
        if sub.ack == "client":
            while sub.unacked:
                key, message = sub.unacked.popitem(last=False)
                self._unacked.pop(key, None)
                done.append(message)
                if key == message_id:
                    break
        else:
            done.append(sub.unacked.pop(message_id))
            self._unacked.pop(message_id, None)
        if sub.kind != "queue":
            return
        queue = queues.find(sub.target)
        if queue is None:
            return
        held = [m for m in done if m is not None]
        if nack:
            queue.put_back(held)
        else:
            queue.settle(held)

    def forget(self, sub: Subscription) -> list[QueuedMessage]:
        """Stop holding what ``sub`` holds; the queue messages among it (to give back)."""
        held = [m for m in sub.unacked.values() if m is not None]
        for message_id in sub.unacked:
            self._unacked.pop(message_id, None)
        sub.unacked.clear()
        return held

    def _was_sent(self, message_id: str) -> bool:
        """``message_id`` is one this connection sent (see :meth:`next_id`)."""
        prefix, _, number = message_id.rpartition("-")
        return (
            prefix == self._prefix
            and number.isascii()
            and number.isdigit()
            and len(number) <= 18
            and 0 < int(number) <= self._sent
        )
