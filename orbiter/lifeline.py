"""Processes orbiter starts end with it: Linux's parent-death signal.

``--workers`` and ``orbiter cluster`` start processes from a supervising
one: the workers, a private ``redis-server``, an nginx front. A clean stop
stops them all; but if the supervisor is killed with SIGKILL (the OOM
killer, ``kill -9``), no handler of it runs, and they would go on: workers
holding the port beside the ones a restart starts, a ``redis-server``
nobody stops. Each of them asks the kernel (``prctl(PR_SET_PDEATHSIG)``)
for SIGTERM when the supervisor ends, and stops as on any SIGTERM (orbiter
tells its clients, Redis writes its file). The kernel sends it when the
*thread* that started the process ends: orbiter starts them from its main
thread. Where there is no such call (not Linux), nothing is asked.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
from collections.abc import Callable

#: ``prctl``'s option number for the parent-death signal (``<linux/prctl.h>``).
PR_SET_PDEATHSIG = 1


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, looked up once (in the parent: a forked child only calls it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return function


def end_with_parent(parent: int, sig: int = signal.SIGTERM) -> None:
    """Have ``sig`` sent to this process when its parent (pid ``parent``) ends; if it
    ended already (before this was asked), ``sig`` now. Nothing where the system has
    no parent-death signal."""
    prctl = _prctl()
    if prctl is None or prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)


def ending_with_this_process(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child (even after it executes
    another program) gets ``sig`` when this process ends."""
    _prctl()  # looked up here, before the fork
    return functools.partial(end_with_parent, os.getpid(), sig)
