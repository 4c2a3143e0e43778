"""CPU time and resident memory of a server process and its children, from /proc."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcSample:
    cpu_s: float
    rss_bytes: int
    processes: int


def _stat(pid: int) -> tuple[int, float, int] | None:
    """(ppid, user+system CPU seconds, RSS bytes) of ``pid``, None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    ppid = int(fields[1])
    cpu = (int(fields[11]) + int(fields[12])) / _TICKS
    rss = int(fields[21]) * _PAGE
    return ppid, cpu, rss


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
    cpu = 0.0
    rss = 0
    count = 0
    for p in process_tree(pid):
        st = _stat(p)
        if st is not None:
            cpu += st[1]
            rss += st[2]
            count += 1
    if count == 0:
        raise ProcessLookupError(f"no process {pid}")
    return ProcSample(cpu, rss, count)
