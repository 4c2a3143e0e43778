"""The SQLite engine's writer thread: runs blocking calls in order, off the event loop.

One thread owns the writer connection (``engine/sqlite_store.py``). The loop
hands it a call with :meth:`WriterThread.submit` and is told the outcome by
a function it gave, called on the loop (one ``call_soon_threadsafe`` per
call): no future or executor machinery per group commit, whose cost the loop
pays once per transaction. :meth:`WriterThread.call` is the awaitable form,
for the rare calls (open, close).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
#: What :meth:`WriterThread.submit` reports: the call's result, or what it raised.
Outcome = Callable[[Any, BaseException | None], None]


class WriterThread:
    """One thread that runs the calls it is given one after another."""

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self._loop = loop
        self._jobs: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...], Outcome] | None]
        self._jobs = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """The thread is running (it ends only after :meth:`stop`, or if it died)."""
        return self._thread.is_alive()

    def submit(self, function: Callable[..., Any], *args: Any, done: Outcome) -> None:
        """Run ``function(*args)`` after the calls submitted before; then, on the loop,
        ``done(result, None)`` or ``done(None, exception)``."""
        self._jobs.put((function, args, done))

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(*args)`` in turn and return its result (or raise its exception)."""
        future: asyncio.Future[T] = self._loop.create_future()

        def done(result: T, error: BaseException | None) -> None:
            if future.cancelled():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        self.submit(function, *args, done=done)
        return await future

    async def stop(self) -> None:
        """Run what was submitted, then end the thread."""
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            function, args, done = job
            try:
                result, error = function(*args), None
            except BaseException as exc:  # reported to the loop, never lost
                result, error = None, exc
            try:
                self._loop.call_soon_threadsafe(done, result, error)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                return
