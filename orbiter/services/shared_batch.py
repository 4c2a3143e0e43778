"""Publications of one channel, encoded once, framed once per transport, for many subscribers.

:class:`orbiter.services.pubsub.PubSub` hands the publications a channel's
subscribers have not been given yet to all of them as one
:class:`SharedBatch` (those a pass over a large channel reached at
different times get different ones); each transport kind frames it once
(:meth:`SharedBatch.framed`) and writes the same bytes to every connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

from orbiter.model import Publication

T = TypeVar("T")


class SharedBatch:
    """Publications on one channel, encoded once, with their framings cached per transport kind.

    The same object goes to every subscriber of the channel; the first
    transport of a kind to write it frames it (:meth:`framed`), the others
    reuse the bytes.
    """

    __slots__ = (
        "_frame",
        "_kind",
        "_more",
        "channel",
        "first_offset",
        "last_offset",
        "messages",
        "pubs",
        "size",
    )

    def __init__(self, channel: str, pubs: list[Publication], messages: list[bytes]) -> None:
        self.channel = channel
        self.pubs = pubs
        self.messages = messages
        self.size = sum(map(len, messages))
        #: The offsets of the first and the last publication (read once per subscriber).
        self.first_offset = pubs[0].offset
        self.last_offset = pubs[-1].offset
        #: The first kind's framing in slots (a channel's subscribers are mostly of one
        #: kind), any other kinds' in a dict made when needed.
        self._kind: object = None
        self._frame: object = None
        self._more: dict[object, object] | None = None

    def framed(self, kind: object, frame: Callable[[list[bytes]], T]) -> T:
        """``frame(messages)``, computed once per ``kind`` for all subscribers.

        Each ``kind`` must always be framed by the same function (its result type).
        """
        if kind is self._kind:
            return cast(T, self._frame)
        if self._kind is None:
            self._kind = kind
            data = self._frame = frame(self.messages)
            return data
        more = self._more
        if more is None:
            more = self._more = {}
        found = more.get(kind)
        if found is None:
            found = more[kind] = frame(self.messages)
        return cast(T, found)
