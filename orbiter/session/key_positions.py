"""Where each Orbited key's client stood when its last connection ended.

The Orbited 0.3 URLs carry no position of their own: an ``xhr`` client
polls again and again, an ``iframe`` reloads itself. So that nothing sent
to a key between two of its connections is lost, orbiter remembers the
position of the last event it wrote to each key, for ``disconnect_delay``
seconds after that connection ended; the next connection of the key
resumes from there (from history). The table is bounded: past ``limit``
keys the oldest entry is dropped. Time is passed in; no clock, no I/O.
"""

from __future__ import annotations

from collections import OrderedDict

from orbiter.model import StreamPosition
from orbiter.protocol.keys import ConnectionKey


class KeyPositions:
    __slots__ = ("_entries", "limit", "ttl")

    def __init__(self, *, ttl: float, limit: int) -> None:
        self.ttl = ttl
        self.limit = limit
        #: Oldest first: every entry lives ``ttl`` seconds from its ``put``.
        self._entries: OrderedDict[ConnectionKey, tuple[StreamPosition, float]] = OrderedDict()

    def get(self, key: ConnectionKey, now: float) -> StreamPosition | None:
        """The position remembered for ``key``, unless it has expired."""
        self._expire(now)
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def put(self, key: ConnectionKey, position: StreamPosition, now: float) -> None:
        """Remember ``position`` for ``key`` until ``now + ttl``."""
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
