"""Waiting in a test for something to become true: bounded, so a test fails, never hangs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], bool], seconds: float = 10.0, step: float = 0.005) -> None:
    """Return once ``condition()`` holds, checked every ``step`` seconds; AssertionError if it
    does not within ``seconds``."""
    for _ in range(max(1, round(seconds / step))):
        if condition():
            return
        await asyncio.sleep(step)
    if not condition():
        raise AssertionError(f"not within {seconds:g} s")
