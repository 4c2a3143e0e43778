"""Open something once for the many callers that ask for it at the same moment.

The first caller opens it (subscribes the node to a channel); callers that come
while that is under way wait for it and see its failure, so nothing is opened
twice and nobody goes on before it is open. :class:`~.pubsub.PubSub` opens each
channel's broker subscription so, and :class:`~.polls.PollHub` each channel's watch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class Opening:
    """One thing being opened: :meth:`run` by the first caller, :meth:`wait` by the others."""

    __slots__ = ("_done",)

    def __init__(self) -> None:
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def run(self, opening: Awaitable[object], undo: Callable[[], None]) -> None:
        """Await ``opening``; if it fails, ``undo()`` (forget the entry), then re-raise."""
        try:
            await opening
        except BaseException as exc:
            undo()
            self._done.set_exception(exc)
            self._done.exception()  # retrieved here; waiters re-raise it
            raise
        self._done.set_result(None)

    async def wait(self) -> None:
        """Return once the first caller's :meth:`run` succeeded; raise what it raised."""
        if not self._done.done():
            await asyncio.shield(self._done)

    @property
    def settled(self) -> bool:
        """The opening is over, either way."""
        return self._done.done()

    @property
    def open(self) -> bool:
        """The opening succeeded (what was opened is to be closed when done with)."""
        return self._done.done() and self._done.exception() is None
