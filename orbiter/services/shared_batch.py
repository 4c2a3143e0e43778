"""Publications of one channel for many subscribers, framed once per wire format.

:class:`orbiter.services.pubsub.PubSub` hands the publications a channel's
subscribers have not been given yet to all of them as one
:class:`SharedBatch` (those a pass over a large channel reached at
different times get different ones). The batch carries publications only:
PubSub speaks no wire format. Each kind of subscriber encodes it on first
use (:meth:`SharedBatch.framed`: the native protocol's JSON pushes, a
WebSocket text frame, a SockJS array, an SSE event, STOMP MESSAGE tails)
and every other subscriber of that kind reuses the bytes, so a channel
whose subscribers all speak STOMP is never encoded as JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from orbiter.model import Publication

T = TypeVar("T")


class SharedBatch:
    """Publications on one channel, with their framings cached per kind.

    The same object goes to every subscriber of the channel; the first
    subscriber of a kind to write it frames it (:meth:`framed`), the others
    reuse the result.
    """

    __slots__ = (
        "_frame",
        "_kind",
        "_more",
        "channel",
        "epoch",
        "last_offset",
        "native",
        "native_size",
        "previous_offset",
        "pubs",
    )

    def __init__(self, channel: str, pubs: list[Publication]) -> None:
        self.channel = channel
        self.pubs = pubs
        #: What a subscriber must have been given for the batch to follow on (the first
        #: publication's offset - 1, and its epoch), and the last offset: read per subscriber.
        first = pubs[0]
        self.previous_offset = first.offset - 1
        self.epoch = first.epoch
        self.last_offset = pubs[-1].offset
        #: The native protocol's pushes, encoded on first use by
        #: :func:`orbiter.services.pushes.pushes`, and their total size in bytes: most
        #: framings are built on them (so they have slots of their own rather than a
        #: :meth:`framed` kind).
        self.native: list[bytes] | None = None
        self.native_size = 0
        #: The first kind's framing in slots (a channel's subscribers are mostly of one
        #: kind), any other kinds' in a dict made when needed.
        self._kind: object = None
        self._frame: object = None
        self._more: dict[object, object] | None = None

    def framed(self, kind: object, frame: Callable[[SharedBatch], T]) -> T:
        """``frame(self)``, computed once per ``kind`` for all subscribers.

        Each ``kind`` must always be framed by the same function (its result
        type). A framing may use another one: the outer kind keeps the slot.
        """
        if kind is self._kind:  # (no typing.cast: interpreted, it is a call per subscriber)
            return self._frame  # type: ignore[return-value]
        if self._kind is None:
            self._kind = kind
            try:
                data = frame(self)
            except BaseException:
                self._kind = None
                raise
            self._frame = data
            return data
        more = self._more
        if more is None:
            more = self._more = {}
        found = more.get(kind)
        if found is None:
            found = more[kind] = frame(self)
        return found  # type: ignore[return-value]
