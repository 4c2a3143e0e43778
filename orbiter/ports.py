"""Free TCP ports for the servers orbiter and its tests start, picked below the kernel's
ephemeral range.

A port the kernel hands out for ``bind(port 0)`` comes from the range it also takes the
source ports of outgoing connections from. Between picking such a port and the server
binding it, any client connection on the machine can take it as its source port, and
the server then fails to start (a test suite making thousands of connections hits this:
a Redis Cluster's node did so on CI). Ports below the range are never taken so. A pick
is random, checked by binding it, and never handed out twice by one process; what is
left is the rare race with another process picking the same port at the same moment.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
#: Ports below this are the system's (and the machine's usual services sit low).
_LOWEST = 10000
_TRIES = 200

_random = random.Random()  # its own: a test's random.seed() must not repeat our picks
_random_pid = os.getpid()
_handed_out: set[int] = set()


def _span() -> range:
    """Where to pick: from ``_LOWEST`` up to the ephemeral range's start, or nothing when
    that range starts too low to leave room (then the kernel picks)."""
    try:
        start = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return range(0)
    return range(_LOWEST, start) if start - _LOWEST >= 1024 else range(0)


def _bindable(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _kernels_pick(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_port(host: str = "127.0.0.1", taken: frozenset[int] = frozenset()) -> int:
    """A port nothing is bound to on ``host`` right now, none of ``taken``, and none this
    process handed out before."""
    global _random_pid
    if os.getpid() != _random_pid:  # a forked child must not repeat its parent's picks
        _random.seed()
        _random_pid = os.getpid()
    span = _span()
    if span:
        for _ in range(_TRIES):
            port = _random.choice(span)
            if port not in _handed_out and port not in taken and _bindable(host, port):
                _handed_out.add(port)
                return port
    while True:  # no room below the range, or it is full: the kernel's pick
        port = _kernels_pick(host)
        if port not in taken and port not in _handed_out:
            _handed_out.add(port)
            return port


def free_ports(n: int, host: str = "127.0.0.1", taken: frozenset[int] = frozenset()) -> list[int]:
    """``n`` distinct free ports (see :func:`free_port`)."""
    return [free_port(host, taken) for _ in range(n)]
