"""The SQLite engine's writer thread: how the loop hands it calls (``engine/sqlite_writer.py``).

The loop queues a call and wakes the thread by writing a byte to a pipe the
thread sleeps reading, which gives up the GIL before the thread wakes: the
thread runs the call at once instead of waking only to wait for the GIL
(two context switches a call, not about six). The write end never blocks the
loop, whatever the thread is doing, and stopping the thread closes the pipe.
(Reports, waits and their order: ``test_sqlite_commit_wait.py``.)
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from orbiter.engine.sqlite_writer import WriterThread

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's /proc")


async def test_calls_queued_while_the_thread_is_busy_never_block_the_loop() -> None:
    """More calls than the pipe holds wake-ups for, while the thread is stuck in one (a
    stalled disk): each submit returns at once, and all run in order once it is over."""
    writer = WriterThread(asyncio.get_running_loop(), "test-writer")
    release = threading.Event()
    # Unsticks the thread if a submit blocked the loop, so that the test fails, not hangs.
    rescue = threading.Timer(5.0, release.set)
    rescue.start()
    try:
        reports: list[Any] = []

        def done(result: Any, error: BaseException | None) -> None:
            reports.append(result)

        writer.submit(release.wait, done=lambda r, e: None)
        started = time.monotonic()
        for i in range(100_000):  # a byte each: more than a pipe's 64 KiB
            writer.submit(int, i, done=done)
        queued_in = time.monotonic() - started
        release.set()
        await writer.call(int)
        assert queued_in < 3.0, f"submitting blocked the loop for {queued_in:.1f} s"
        assert reports == list(range(100_000))
    finally:
        rescue.cancel()
        release.set()
        await writer.stop()


@linux_only
async def test_stop_closes_the_pipe_and_a_second_stop_does_nothing() -> None:
    before = len(os.listdir("/proc/self/fd"))
    writer = WriterThread(asyncio.get_running_loop(), "test-writer")
    assert await writer.call(int, 7) == 7
    await writer.stop()
    await writer.stop()
    assert not writer.alive
    assert len(os.listdir("/proc/self/fd")) == before


def _switches(*thread_ids: int) -> int:
    """Context switches of these threads so far: waits and preemptions."""
    count = 0
    for thread_id in thread_ids:
        status = Path(f"/proc/self/task/{thread_id}/status").read_text()
        for line in status.splitlines():
            if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                count += int(line.split()[1])
    return count


@linux_only
async def test_a_call_costs_two_context_switches_not_more_for_the_gil() -> None:
    """On one core (as ``orbiter bench`` pins the server), a waited call costs the two
    threads about two context switches (measured 2.0-2.1): the thread is not woken
    while the loop holds the GIL, only to sleep again until the loop lets go of it
    and be woken once more (a lock's or a queue's wake-up: 5.6-5.9)."""
    writer = WriterThread(asyncio.get_running_loop(), "test-writer")
    native = writer._thread.native_id
    assert native is not None
    me = threading.get_native_id()
    affinity = os.sched_getaffinity(0)
    core = {min(affinity)}
    try:
        os.sched_setaffinity(me, core)
        os.sched_setaffinity(native, core)
        for _ in range(200):  # settle
            writer.submit(int, done=lambda r, e: None, wait=1.0)
        calls = 2000
        before = _switches(native, me)
        for _ in range(calls):
            assert writer.submit(int, done=lambda r, e: None, wait=1.0)
        per_call = (_switches(native, me) - before) / calls
        assert per_call < 3.5, f"{per_call:.2f} context switches a call"
    finally:
        os.sched_setaffinity(me, affinity)
        await writer.stop()
