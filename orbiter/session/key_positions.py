"""Where each Orbited key's client stands: live while it is connected, kept after.

The Orbited 0.3 URLs carry no position of their own: an ``xhr`` client
polls again and again, an ``iframe`` reloads itself. So that nothing sent
to a key between two of its connections is lost, and nothing it was
already sent comes again, each connection of a key holds a
:class:`KeyHold` (:meth:`KeyPositions.begin`) that it moves on as it
writes; the key's next connection starts from the newest connection's
hold *while that one still runs* — a reloading page's new request often
arrives before the server has seen the old one close, and a proxy may hide
the close until the next heartbeat — and after the last one ended, from
the position it left (:meth:`KeyPositions.end`), kept ``ttl`` seconds. The
table of ended keys is bounded: past ``limit`` keys the oldest entry is
dropped. Time is passed in; no clock, no I/O.
"""

from __future__ import annotations

from collections import OrderedDict

from orbiter.model import StreamPosition
from orbiter.protocol.keys import ConnectionKey


class KeyHold:
    """One connection's place on its key: the position of the last event it wrote."""

    __slots__ = ("position",)

    def __init__(self, position: StreamPosition | None) -> None:
        self.position = position


class KeyPositions:
    __slots__ = ("_entries", "_live", "limit", "ttl")

    def __init__(self, *, ttl: float, limit: int) -> None:
        self.ttl = ttl
        self.limit = limit
        #: Oldest first: every entry lives ``ttl`` seconds from its ``put``.
        self._entries: OrderedDict[ConnectionKey, tuple[StreamPosition, float]] = OrderedDict()
        #: The newest running connection of each key (one per running connection at most).
        self._live: dict[ConnectionKey, KeyHold] = {}

    def begin(self, key: ConnectionKey, now: float) -> KeyHold:
        """A new connection of ``key``: it becomes the key's newest, starting where the
        previous newest stands now if that one still runs, else where the last one ended
        (None: nowhere known)."""
        previous = self._live.get(key)
        hold = KeyHold(previous.position if previous is not None else self.get(key, now))
        self._live[key] = hold
        return hold

    def current(self, key: ConnectionKey, hold: KeyHold) -> bool:
        """Is ``hold`` still the newest connection of ``key``?"""
        return self._live.get(key) is hold

    def end(self, key: ConnectionKey, hold: KeyHold, now: float) -> None:
        """The connection of ``hold`` ended: keep its position, unless a newer connection
        of the key runs (it took over from this one) or one that ended got further."""
        newest = self._live.get(key) is hold
        if newest:
            del self._live[key]
        position = hold.position
        if position is None:
            return
        if not newest:
            kept = self.get(key, now)
            if key in self._live or (
                kept is not None and kept.epoch == position.epoch and kept.offset >= position.offset
            ):
                return
        self.put(key, position, now)

    def get(self, key: ConnectionKey, now: float) -> StreamPosition | None:
        """The position kept for ``key`` since its last connection ended, unless expired."""
        self._expire(now)
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def put(self, key: ConnectionKey, position: StreamPosition, now: float) -> None:
        """Keep ``position`` for ``key`` until ``now + ttl``."""
        self._entries[key] = (position, now + self.ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self.limit:
            self._entries.popitem(last=False)
        self._expire(now)

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, (_, expires) = next(iter(entries.items()))
            if expires > now:
                return
            del entries[key]

    def __len__(self) -> int:
        return len(self._entries)
