"""Free ports are picked below the kernel's ephemeral range, free, and never twice."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from orbiter import ports


def _ephemeral_start() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])


def test_a_free_port_is_below_the_ephemeral_range_and_bindable() -> None:
    picked = ports.free_ports(20)
    assert len(set(picked)) == 20
    for port in picked:
        assert ports._LOWEST <= port < _ephemeral_start()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_in_use_or_taken_is_never_picked(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        span = range(busy, busy + 3)
        monkeypatch.setattr(ports, "_span", lambda: span)
        for _ in range(20):
            monkeypatch.setattr(ports, "_handed_out", set())
            picked = ports.free_port(taken=frozenset({busy + 1}))
            assert picked not in (busy, busy + 1)


def test_no_port_is_handed_out_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "_span", lambda: range(40000, 40000))  # empty: kernel's picks
    monkeypatch.setattr(ports, "_handed_out", set())
    first = ports.free_port()
    answers = iter([first, first, first + 1])  # the kernel hands out one port twice
    monkeypatch.setattr(ports, "_kernels_pick", lambda host: next(answers))
    assert ports.free_port() == first + 1


def test_a_range_starting_too_low_leaves_the_pick_to_the_kernel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    proc = tmp_path / "ip_local_port_range"
    proc.write_text("10500\t60999\n")
    monkeypatch.setattr(ports, "_EPHEMERAL_RANGE", proc)
    assert not ports._span()
    proc.write_text("32768\t60999\n")
    assert ports._span() == range(ports._LOWEST, 32768)
