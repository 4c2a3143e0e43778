"""One timer for many connections' deadlines (pings, pong and close timeouts).

A :class:`DeadlineWheel` holds connections in buckets of ``resolution``
seconds by the time they asked to be woken at, and keeps a single event-loop
timer for the earliest bucket, instead of one timer per connection. A woken
connection (:meth:`Deadlined.on_deadline`) says when it wants to be woken
next, or that it is done.

Traffic does not touch the wheel: a connection notes when it last heard from
its client and, when woken, works out whether a ping is due yet; if not, it
asks again for the later time. So an idle connection costs one bucket entry
and one wake-up per ping interval, and a busy one no more than that.

A connection is in at most one bucket: :meth:`DeadlineWheel.wake_at` for a
time earlier than its bucket moves it, a later time leaves it where it is
(it will ask again). :meth:`DeadlineWheel.forget` takes a closed connection
out, so that the wheel holds no reference to it.

Times are the wheel's ``clock`` (``time.monotonic`` unless given; the event
loop's timers run on the same clock), so tests drive it with a clock they move.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("orbiter.deadlines")


class Deadlined(Protocol):
    """What the wheel holds: a connection with a deadline."""

    #: The bucket the wheel holds it in (0: none); the wheel's, not to be set by others.
    wheel_bucket: int

    def on_deadline(self, now: float) -> float | None:
        """Woken at (or a little after) its time: when to be woken next, or None for never."""


class DeadlineWheel:
    """Wakes :class:`Deadlined` connections at their times, with one timer."""

    __slots__ = ("_armed", "_buckets", "_handle", "_keys", "clock", "resolution")

    def __init__(self, resolution: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not resolution > 0:
            raise ValueError(f"the wheel's resolution must be > 0 seconds, not {resolution!r}")
        self.resolution = resolution
        #: Monotonic seconds: what :meth:`wake_at` times and :meth:`Deadlined.on_deadline`'s
        #: ``now`` are read on.
        self.clock = clock
        self._buckets: dict[int, dict[Deadlined, None]] = {}
        self._keys: list[int] = []  # a heap of the buckets' keys
        self._handle: asyncio.TimerHandle | None = None
        #: The bucket the timer is set for; -1 while firing.
        self._armed = 0

    def __len__(self) -> int:
        """Connections held."""
        return sum(map(len, self._buckets.values()))

    def wake_at(self, item: Deadlined, when: float) -> None:
        """Wake ``item`` at ``when`` (:attr:`clock` seconds), or at its earlier time."""
        key = max(1, math.ceil(when / self.resolution))
        if item.wheel_bucket:
            if item.wheel_bucket <= key:
                return
            self.forget(item)
        item.wheel_bucket = key
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = {item: None}
            heapq.heappush(self._keys, key)
            if self._armed >= 0 and (self._handle is None or key < self._armed):
                self._arm()  # (not while firing: it arms once done)
        else:
            bucket[item] = None

    def forget(self, item: Deadlined) -> None:
        """Do not wake ``item`` (until it is given a time again)."""
        bucket = self._buckets.get(item.wheel_bucket)
        if bucket is not None:
            bucket.pop(item, None)
        item.wheel_bucket = 0

    def _arm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self._keys:
            return
        self._armed = self._keys[0]
        delay = max(0.0, self._armed * self.resolution - self.clock())
        self._handle = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._armed = -1
        now = self.clock()
        due = math.floor((now + 0.001) / self.resolution)  # a timer may fire a little early
        keys = self._keys
        while keys and keys[0] <= due:
            key = heapq.heappop(keys)
            for item in self._buckets.pop(key, ()):
                item.wheel_bucket = 0
                try:
                    later = item.on_deadline(now)
                except Exception:
                    log.exception("a deadline failed")
                    continue
                if later is not None:
                    self.wake_at(item, max(later, now + self.resolution))
        self._armed = 0
        self._arm()

    def close(self) -> None:
        """Drop every entry and the timer."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._buckets.clear()
        self._keys.clear()
