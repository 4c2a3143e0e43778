"""CPU time, resident memory and connections of a server process and its children, from /proc."""

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


#: ``/proc/net/tcp``'s state of an established connection.
_ESTABLISHED = "01"


def _established_inodes(port: int) -> set[str]:
    """The socket inodes of the established TCP connections whose local port is ``port``."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == _ESTABLISHED and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def connections_by_process(pids: tuple[int, ...], port: int) -> dict[int, int]:
    """How many established connections to ``port`` each process of ``pids``' trees holds
    (``--workers N``: how the kernel spread them); processes holding none are left out."""
    inodes = _established_inodes(port)
    counts: dict[int, int] = {}
    for pid in {p for root in pids for p in process_tree(root)}:
        held = 0
        try:
            with os.scandir(f"/proc/{pid}/fd") as fds:
                for fd in fds:
                    try:
                        link = os.readlink(fd.path)
                    except OSError:
                        continue
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        held += 1
        except OSError:
            continue
        if held:
            counts[pid] = held
    return counts
