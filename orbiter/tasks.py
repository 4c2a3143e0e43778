"""Stopping an asyncio task for certain: cancelled again until it has ended."""

from __future__ import annotations

import asyncio
from typing import Any

#: Seconds a cancelled task is given to end before it is cancelled again.
PATIENCE = 1.0


async def stop(task: asyncio.Task[Any] | None, patience: float = PATIENCE) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling it again every ``patience``
    seconds while it goes on; an exception it ended with (other than its cancellation) is
    raised here.

    One cancellation is not always enough: Python 3.11's ``asyncio.wait_for`` swallows a
    cancellation that arrives as the awaitable it wraps completes (gh-86296, fixed in
    3.12), and redis-py wraps each command's socket write in it. A loop cancelled in that
    instant carries on as if nothing happened: seen in CI as a Redis renewal loop that
    went back to sleep while its owner's ``close`` waited for it forever.
    """
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=patience)
    if not task.cancelled():
        task.result()
