"""The file-descriptor reserve: which accepted connections fall in it, and what asking costs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orbiter.transports import sniffing


class FakeSocket:
    def __init__(self, number: int) -> None:
        self.number = number

    def fileno(self) -> int:
        return self.number


class FakeTransport(asyncio.BaseTransport):
    """Stands in for an accepted connection; records what it was asked."""

    def __init__(self, number: int) -> None:
        super().__init__()
        self.number = number
        self.asked: list[str] = []

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        self.asked.append(name)
        return FakeSocket(self.number) if name == "socket" else default


def test_far_below_the_ceiling_the_socket_is_not_asked_for() -> None:
    # uvloop keeps the socket object it answers with for the connection's life.
    transport = FakeTransport(5)
    assert sniffing.reserved_descriptor(transport) is None
    assert transport.asked == []


@pytest.fixture
def near_ceiling(monkeypatch: pytest.MonkeyPatch) -> int:
    """Limits set so that the lowest free descriptor is just under the ceiling."""
    ceiling = sniffing._lowest_free_descriptor() + 2
    reserve = sniffing.DESCRIPTOR_RESERVE
    monkeypatch.setattr(sniffing, "_descriptor_limits", lambda: (ceiling + reserve, reserve))
    assert sniffing.descriptor_ceiling() == ceiling
    return ceiling


def test_a_connection_in_the_reserve_is_named(near_ceiling: int) -> None:
    transport = FakeTransport(near_ceiling)
    assert sniffing.reserved_descriptor(transport) == near_ceiling
    assert transport.asked == ["socket"]
    assert sniffing.reserved_descriptor(FakeTransport(near_ceiling + 7)) == near_ceiling + 7


def test_a_connection_just_under_the_ceiling_is_not(near_ceiling: int) -> None:
    assert sniffing.reserved_descriptor(FakeTransport(near_ceiling - 1)) is None


def test_near_the_ceiling_by_the_lowest_free_number_the_socket_is_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Holes below (closed connections) make the lowest free number lower than a
    # new connection's own: within the reserve's width of the ceiling, ask.
    lowest = sniffing._lowest_free_descriptor()
    reserve = sniffing.DESCRIPTOR_RESERVE
    ceiling = lowest + reserve
    monkeypatch.setattr(sniffing, "_descriptor_limits", lambda: (ceiling + reserve, reserve))
    transport = FakeTransport(ceiling + 3)
    assert sniffing.reserved_descriptor(transport) == ceiling + 3
    monkeypatch.setattr(sniffing, "_descriptor_limits", lambda: (ceiling + reserve + 1, reserve))
    assert sniffing.reserved_descriptor(FakeTransport(ceiling + 4)) is None
