"""Runs elements' ``attached`` / ``detached`` hooks: sync, or async cut at a time-out.

An application's hook that raises is logged, never passed on; an async one
runs as a task, cut after ``timeout`` seconds, and is tracked so that its
owner can cancel it or wait for it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, Literal

from orbiter.services.live.elements import LiveElement

log = logging.getLogger("orbiter.live")


class Hooks:
    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._tasks: set[asyncio.Task[None]] = set()

    def run(self, element: LiveElement, name: Literal["attached", "detached"]) -> None:
        hook = element.attached if name == "attached" else element.detached
        try:
            result = hook()
        except Exception:
            log.exception("%s.%s() failed", type(element).__name__, name)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(self._await(element, name, result))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _await(self, element: LiveElement, name: str, awaitable: Any) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await awaitable
        except Exception:
            log.exception("%s.%s() failed", type(element).__name__, name)

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def wait(self) -> None:
        """Until every hook running now is done (each is cut at the time-out)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks))
