"""CPU time and resident memory of a server process and its children, from /proc."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcSample:
    #: User plus system CPU seconds, and the user part alone.
    cpu_s: float
    user_s: float
    rss_bytes: int
    processes: int


def _stat(pid: int) -> tuple[int, float, float, int] | None:
    """(ppid, user CPU seconds, system CPU seconds, RSS bytes) of ``pid``, None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    ppid = int(fields[1])
    user = int(fields[11]) / _TICKS
    system = int(fields[12]) / _TICKS
    rss = int(fields[21]) * _PAGE
    return ppid, user, system, rss


def process_tree(pid: int) -> list[int]:
    """``pid`` and its direct children (nginx's workers, say)."""
    children = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None and st[0] == pid:
                children.append(int(entry.name))
    return [pid, *children]


def sample(pid: int) -> ProcSample:
    user = system = 0.0
    rss = 0
    count = 0
    for p in process_tree(pid):
        st = _stat(p)
        if st is not None:
            user += st[1]
            system += st[2]
            rss += st[3]
            count += 1
    if count == 0:
        raise ProcessLookupError(f"no process {pid}")
    return ProcSample(user + system, user, rss, count)


def sample_all(pids: tuple[int, ...]) -> ProcSample:
    """The sum of :func:`sample` over ``pids`` (a target of several processes)."""
    samples = [sample(pid) for pid in pids]
    return ProcSample(
        sum(s.cpu_s for s in samples),
        sum(s.user_s for s in samples),
        sum(s.rss_bytes for s in samples),
        sum(s.processes for s in samples),
    )
