"""A SEND's or SUBSCRIBE's destination, checked: a topic's channel or a queue.

Each check returns what the destination names, or raises the
:class:`StompError` that refuses the frame (no or unknown destination, a
name the channel rules refuse, a reserved channel, one queue too many).
"""

from __future__ import annotations

from orbiter.protocol.native import reserved_refusal, validate_channel
from orbiter.protocol.stomp import Frame
from orbiter.services.stomp.errors import StompError
from orbiter.services.stomp.interfaces import Destination, SessionBroker
from orbiter.services.stomp.queues import MessageQueue


def destination_of(broker: SessionBroker, frame: Frame) -> Destination:
    """What ``frame``'s ``destination`` header names."""
    name = frame.get("destination")
    if not name:
        raise StompError(
            "missing destination", f"a {frame.command} frame needs a destination header"
        )
    try:
        return broker.destination(name)
    except ValueError as exc:
        raise StompError("unknown destination", str(exc)) from None


def channel_of(channel: str) -> str:
    """``channel`` (a topic's), if the channel rules allow the name and it is not reserved."""
    try:
        validate_channel(channel)
    except ValueError as exc:
        raise StompError("bad destination", str(exc).replace("'channel'", "the channel")) from None
    reserved = reserved_refusal(channel)
    if reserved is not None:
        raise StompError("permission denied", reserved)
    return channel


def queue_of(broker: SessionBroker, name: str) -> MessageQueue:
    """The queue ``name``, opened if need be (within ``stomp.max_queues``)."""
    try:
        validate_channel(name)
    except ValueError as exc:
        raise StompError(
            "bad destination", str(exc).replace("'channel'", f"queue name {name[:64]!r}")
        ) from None
    queue = broker.queues.get(name)
    if queue is None:
        raise StompError(
            "too many queues",
            f"the broker holds {broker.queues.max_queues} queues (stomp.max_queues); "
            f"cannot open {name!r}",
        )
    return queue
