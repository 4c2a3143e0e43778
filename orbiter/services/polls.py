"""Held long polls: requests that wait for a channel's next publication.

A long poll asks for a channel's publications after a position. When there
are some it is answered at once, with all of them in one batch; otherwise
it is held until the next publication arrives or a timeout passes.

:class:`PollHub` holds the waiting polls of a node. Each channel that has
some is watched once (a :class:`_Watch` is one PubSub subscriber), and a
publication wakes every poll waiting on that channel in one pass, handing
each the same batch, encoded at most once. A held poll is a future awaited
by its own request handler: no task is started per request, so nothing
outlives a request. One sweeper task releases the polls whose clients went
away and drops watches idle for ``linger`` seconds (clients that poll back
to back keep their channel watched). :meth:`PollHub.close` releases every
poll at shutdown. The number of held polls is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import secrets
from collections.abc import Callable

from orbiter.engine.base import HistoryPage
from orbiter.model import Publication, StreamPosition
from orbiter.protocol.native import publication_fields
from orbiter.protocol.scripts import dumps
from orbiter.services.opening import Opening
from orbiter.services.pubsub import PubSub
from orbiter.services.shared_batch import SharedBatch

log = logging.getLogger("orbiter.polls")


class TooManyPolls(Exception):
    """The node holds as many polls as it may; try again shortly."""


class Batch:
    """What a long poll answers: one channel's publications after a position.

    ``position`` is where the channel stands after them (the next poll's
    ``since``). ``recoverable`` is False when the publications after the
    asked position are lost (history trimmed, epoch changed); the batch is
    then empty, as in the native protocol.
    """

    __slots__ = ("_json", "channel", "position", "publications", "recoverable")

    def __init__(
        self,
        channel: str,
        position: StreamPosition,
        publications: list[Publication],
        recoverable: bool,
    ) -> None:
        self.channel = channel
        self.position = position
        self.publications = publications
        self.recoverable = recoverable
        self._json: bytes | None = None

    @classmethod
    def from_page(cls, channel: str, page: HistoryPage) -> Batch:
        pubs = page.publications if page.recoverable else []
        return cls(channel, page.position, pubs, page.recoverable)

    def json(self) -> bytes:
        """The batch as JSON, safe inside a script too; encoded once, however often asked."""
        if self._json is None:
            self._json = dumps(
                {
                    "channel": self.channel,
                    "epoch": self.position.epoch,
                    "offset": self.position.offset,
                    "recoverable": self.recoverable,
                    "publications": [publication_fields(p) for p in self.publications],
                }
            )
        return self._json


class _Release(enum.Enum):
    #: The client went away: nobody reads the answer.
    GONE = "gone"
    #: The hub is closing (server shutdown): answer now.
    CLOSED = "closed"


class _Waiter:
    __slots__ = ("alive", "future")

    def __init__(self, alive: Callable[[], bool]) -> None:
        self.alive = alive
        self.future: asyncio.Future[Batch | _Release] = asyncio.get_running_loop().create_future()

    def wake(self, outcome: Batch | _Release) -> None:
        if not self.future.done():
            self.future.set_result(outcome)


class _Watch:
    """The polls waiting on one channel; subscribed to it as one client."""

    __slots__ = ("channel", "client_id", "idle_since", "latest", "ready", "waiters")

    user: str | None = None
    info: None = None

    def __init__(self, channel: str, now: float) -> None:
        self.channel = channel
        self.client_id = "poll-" + secrets.token_urlsafe(6)
        self.waiters: set[_Waiter] = set()
        self.idle_since = now
        #: The last publication seen, to tell whether a waiter's wake-up is the newest.
        self.latest: Publication | None = None
        #: Open once the PubSub subscription is live.
        self.ready = Opening()

    def deliver_batch(self, batch: SharedBatch) -> None:
        """Wake every waiting poll with the batch's first publication (nothing is encoded here).

        A poll answers with that one publication when it is the newest and the
        next after what it read; else it reads the rest from history.
        """
        pub = batch.pubs[0]
        self.latest = batch.pubs[-1]
        if not self.waiters:
            return
        waiters, self.waiters = self.waiters, set()
        woken = Batch(pub.channel, StreamPosition(pub.offset, pub.epoch), [pub], True)
        for waiter in waiters:
            waiter.wake(woken)

    def deliver_presence(self, channel: str, message: bytes) -> None:
        pass


class PollHub:
    def __init__(
        self,
        pubsub: PubSub,
        *,
        max_waiting: int,
        linger: float = 5.0,
        sweep_interval: float = 1.0,
    ) -> None:
        self._pubsub = pubsub
        self.max_waiting = max_waiting
        self._linger = linger
        self._sweep_interval = sweep_interval
        self._watches: dict[str, _Watch] = {}
        self._waiting = 0
        self._closed = False
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """Polls held (or being set up) right now."""
        return self._waiting

    @property
    def watched(self) -> list[str]:
        return list(self._watches)

    async def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever())

    async def position(self, channel: str) -> StreamPosition:
        """Where ``channel``'s stream stands now."""
        return (await self._pubsub.history(channel, None, limit=0)).position

    async def poll(
        self,
        channel: str,
        since: StreamPosition,
        *,
        timeout: float,
        alive: Callable[[], bool],
    ) -> Batch | None:
        """The publications after ``since``: at once if any, else the next ones.

        After ``timeout`` seconds without one, an empty batch at the current
        position. None if ``alive()`` turned False while waiting (checked by
        the sweeper). Raises :class:`TooManyPolls` past ``max_waiting``.
        """
        if self._closed:
            return Batch.from_page(channel, await self._pubsub.history(channel, since))
        if self._waiting >= self.max_waiting:
            raise TooManyPolls(f"this server holds {self.max_waiting} polls already")
        self._waiting += 1
        waiter = _Waiter(alive)
        watch: _Watch | None = None
        try:
            watch = await self._watch(channel)
            watch.waiters.add(waiter)
            # Read after the waiter is in place: a publication racing the
            # read is either in the page or wakes the waiter.
            page = await self._pubsub.history(channel, since)
            if page.publications or not page.recoverable or self._closed:
                return Batch.from_page(channel, page)
            try:
                async with asyncio.timeout(timeout):
                    outcome = await waiter.future
            except TimeoutError:
                return Batch.from_page(channel, page)
            if outcome is _Release.GONE:
                return None
            if outcome is _Release.CLOSED:
                return Batch.from_page(channel, page)
            pub = outcome.publications[0]
            here = page.position
            if pub is watch.latest and (pub.epoch, pub.offset) == (here.epoch, here.offset + 1):
                return outcome  # the one batch every waiter of this publication shares
            # More arrived in the meantime: answer with all of them.
            return Batch.from_page(channel, await self._pubsub.history(channel, since))
        finally:
            self._waiting -= 1
            if watch is not None:
                watch.waiters.discard(waiter)
                if not watch.waiters:
                    watch.idle_since = asyncio.get_running_loop().time()

    async def _watch(self, channel: str) -> _Watch:
        watch = self._watches.get(channel)
        if watch is None:
            new = self._watches[channel] = _Watch(channel, asyncio.get_running_loop().time())

            def forget() -> None:
                if self._watches.get(channel) is new:
                    del self._watches[channel]

            await new.ready.run(self._pubsub.subscribe(new, channel), forget)
            return new
        await watch.ready.wait()
        return watch

    async def sweep(self, now: float | None = None) -> None:
        """Release polls whose clients left; drop watches idle past ``linger``."""
        now = asyncio.get_running_loop().time() if now is None else now
        for channel, watch in list(self._watches.items()):
            for waiter in list(watch.waiters):
                if not waiter.alive():
                    watch.waiters.discard(waiter)
                    waiter.wake(_Release.GONE)
            idle = not watch.waiters and now - watch.idle_since >= self._linger
            if idle and watch.ready.settled and self._watches.get(channel) is watch:
                del self._watches[channel]
                await self._pubsub.unsubscribe(watch, channel)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            try:
                await self.sweep()
            except Exception:
                log.exception("sweeping held polls failed")

    async def close(self) -> None:
        """Answer every held poll now (server shutdown) and stop watching."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        watches, self._watches = self._watches, {}
        if self._waiting:
            log.info("answering %d held polls", self._waiting)
        for watch in watches.values():
            waiters, watch.waiters = watch.waiters, set()
            for waiter in waiters:
                waiter.wake(_Release.CLOSED)
        for channel, watch in watches.items():
            if watch.ready.open:
                await self._pubsub.unsubscribe(watch, channel)
