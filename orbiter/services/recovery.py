"""Recovery from history: the live publications held while a subscription reads it.

A session recovering a channel subscribes first, then reads the channel's
history page; publications that arrive meanwhile are held here (bounded in
bytes: past ``limits.outgoing_buffer`` the subscriber is a slow consumer), and
once the page has gone to the client only those newer than the page's
position follow, so none is lost or sent twice. The native session and the
STOMP session both recover so, over this one helper.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from orbiter.model import Publication, StreamPosition

#: What a session keeps with each held publication (its encoding, ready to send).
Item = TypeVar("Item")


class Recovery(Generic[Item]):
    """The publications held for one subscription until its history page is sent."""

    __slots__ = ("_held_bytes", "_limit", "held")

    def __init__(self, limit: int) -> None:
        #: The publications held, oldest first (empty: none came during the read).
        self.held: list[tuple[Publication, Item]] = []
        self._held_bytes = 0
        self._limit = limit

    def hold(self, pub: Publication, item: Item, size: int) -> bool:
        """Hold a live publication (``size`` bytes); False once more than the limit is held."""
        self.held.append((pub, item))
        self._held_bytes += size
        return self._held_bytes <= self._limit

    def newer_than(self, position: StreamPosition) -> list[tuple[Publication, Item]]:
        """The held publications the page at ``position`` did not have, oldest first."""
        offset = position.offset
        return [(pub, item) for pub, item in self.held if pub.offset > offset]
