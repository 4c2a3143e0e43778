"""On a test about to time out, print the stacks of the asyncio tasks of every running
loop: pytest-timeout prints the threads' stacks only, and a hung async test or fixture
shows nothing but the loop waiting in ``select``."""

from __future__ import annotations

import asyncio
import gc
import io
import sys
import threading
from collections.abc import Iterator

import pytest

#: Seconds before pytest-timeout's own limit at which the tasks are printed.
AHEAD = 10.0


def _print_tasks(loop: asyncio.AbstractEventLoop) -> None:
    out = io.StringIO()
    tasks = asyncio.all_tasks(loop)
    print(f"\n+++ {len(tasks)} asyncio tasks of a loop about to time out +++", file=out)
    for task in tasks:
        task.print_stack(limit=12, file=out)
    sys.stderr.write(out.getvalue())


def _dump_running_loops() -> None:
    loops = [
        o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and o.is_running()
    ]
    for loop in loops:
        loop.call_soon_threadsafe(_print_tasks, loop)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    marker = item.get_closest_marker("timeout")
    if marker and marker.args:
        limit = float(marker.args[0])
    else:
        limit = float(item.config.getoption("timeout", None) or item.config.getini("timeout") or 0)
    timer = threading.Timer(limit - AHEAD, _dump_running_loops) if limit > AHEAD else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()
