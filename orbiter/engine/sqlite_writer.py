"""The SQLite engine's writer thread: runs blocking calls in order, off the event loop.

One thread owns the writer connection (``engine/sqlite_store.py``). The loop
hands it a call with :meth:`WriterThread.submit` and is told the outcome by
a function it gave, called on the loop (one ``call_soon_threadsafe`` per
call): no future or executor machinery per group commit, whose cost the loop
pays once per transaction. :meth:`WriterThread.call` is the awaitable form,
for the rare calls (open, close).

The loop may also wait a bounded time for a call it submits (``wait``): if the
call is over within it, the loop calls ``done`` itself, at once, and the thread
does not report it; if not, the loop goes on and the thread reports it as
usual. Which of the two reports is settled under a lock, so ``done`` is called
exactly once whatever the timing; the loop never waits longer than ``wait``,
whatever the call (a disk that stalls) does.

**The thread is woken through a pipe**, not a lock or a queue: the loop
appends the call to a deque and writes a byte to the pipe, which the thread
sleeps reading. ``os.write`` gives up the GIL before it wakes the thread, so
the thread, scheduled at once on the loop's core (it has slept, the
scheduler favours it), finds the GIL free and runs the call. Woken by a
lock's release or a queue's ``put`` instead, it woke while the loop still
held the GIL, went back to sleep waiting for it, and was woken again once
the loop waited: about six context switches a call instead of two
(measured: ``tests/support/profile_publish_path.py --data-dir`` pinned to one
core, as ``orbiter bench`` pins the server; 2.5-3.5 µs less CPU per
publication at 8 a commit). The pipe's write end does not block: full, it
has wake-ups enough in it.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
#: What :meth:`WriterThread.submit` reports: the call's result, or what it raised.
Outcome = Callable[[Any, BaseException | None], None]


class _Ticket:
    """A call the loop waits for: which side reports it (settled under the thread's lock)."""

    __slots__ = ("error", "finished", "over", "result", "waiting")

    def __init__(self) -> None:
        #: Released by the thread when the call is over while the loop still waits.
        self.finished = threading.Lock()
        self.finished.acquire()
        #: The loop still waits (the thread leaves the report to it); the call is over and
        #: the loop reports it.
        self.waiting = True
        self.over = False
        self.result: Any = None
        self.error: BaseException | None = None


#: A job: the call, its arguments, what reports it, and the ticket of a waited call.
_Job = tuple[Callable[..., Any], tuple[Any, ...], Outcome, _Ticket | None]


class WriterThread:
    """One thread that runs the calls it is given one after another."""

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self._loop = loop
        #: Calls not yet started (None: end the thread), and the pipe that wakes the
        #: thread when it finds none (a byte a call, read a buffer at a time).
        self._jobs: deque[_Job | None] = deque()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        #: Settles who reports a waited call (:class:`_Ticket`).
        self._lock = threading.Lock()
        #: Calls submitted and reported so far (on the loop): a call is waited for only
        #: when every one before it was reported, so that reports keep their order.
        self._submitted = 0
        self._reported = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """The thread is running (it ends only after :meth:`stop`, or if it died)."""
        return self._thread.is_alive()

    def submit(
        self, function: Callable[..., Any], *args: Any, done: Outcome, wait: float = 0.0
    ) -> bool:
        """Run ``function(*args)`` after the calls submitted before; then, on the loop,
        ``done(result, None)`` or ``done(None, exception)``.

        With ``wait`` (seconds, > 0), the loop waits at most that long for the call to
        be over: if it is, ``done`` is called here, before this returns True; if not,
        False, and ``done`` comes from the thread as without a wait. Calls are reported
        in the order they were submitted: no wait while an earlier one is unreported.
        """
        self._submitted += 1
        if wait <= 0 or self._reported != self._submitted - 1:
            self._put((function, args, done, None))
            return False
        ticket = _Ticket()
        self._put((function, args, done, ticket))
        ticket.finished.acquire(True, wait)
        with self._lock:
            if not ticket.over:
                ticket.waiting = False  # the thread reports it
                return False
        self._report(done, ticket.result, ticket.error)
        return True

    def _put(self, job: _Job | None) -> None:
        """Queue a job and wake the thread (see the module's docstring); after
        :meth:`stop`, the job is never run, as nothing reads the queue."""
        self._jobs.append(job)
        if self._wake_write < 0:
            return
        try:
            os.write(self._wake_write, b"\0")
        except BlockingIOError:  # full: the thread has wake-ups enough still to read
            return

    def _report(self, done: Outcome, result: Any, error: BaseException | None) -> None:
        """Report a call (on the loop)."""
        self._reported += 1
        done(result, error)

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
        """Run what was submitted, then end the thread (and close its pipe)."""
        if self._wake_write < 0:
            return
        self._put(None)
        await asyncio.to_thread(self._thread.join)
        os.close(self._wake_write)
        os.close(self._wake_read)
        self._wake_write = self._wake_read = -1

    def _run(self) -> None:
        jobs, wake = self._jobs, self._wake_read
        while True:
            if not jobs:
                os.read(wake, 4096)  # gives up the GIL while it sleeps
                continue
            job = jobs.popleft()
            if job is None:
                return
            function, args, done, ticket = job
            try:
                result, error = function(*args), None
            except BaseException as exc:  # reported to the loop, never lost
                result, error = None, exc
            if ticket is not None:
                with self._lock:
                    if ticket.waiting:  # the loop reports it
                        ticket.result, ticket.error = result, error
                        ticket.over = True
                        ticket.finished.release()
                        continue
            try:
                self._loop.call_soon_threadsafe(self._report, done, result, error)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                return
