"""The bounded, expiring table of Orbited key positions, with time passed in."""

from __future__ import annotations

from orbiter.model import StreamPosition
from orbiter.protocol.keys import ConnectionKey
from orbiter.session.key_positions import KeyPositions

A = ConnectionKey.parse("a, 0, /x")
B = ConnectionKey.parse("b, 0, /x")
C = ConnectionKey.parse("c, 0, /x")


def test_a_position_lives_for_the_delay_after_its_put() -> None:
    table = KeyPositions(ttl=10, limit=100)
    table.put(A, StreamPosition(3, "e"), now=100)
    assert table.get(A, now=109.9) == StreamPosition(3, "e")
    table.put(A, StreamPosition(4, "e"), now=105)  # a later connection ended
    assert table.get(A, now=114) == StreamPosition(4, "e")
    assert table.get(A, now=115) is None
    assert len(table) == 0


def test_the_oldest_key_goes_first_past_the_limit() -> None:
    table = KeyPositions(ttl=10, limit=2)
    table.put(A, StreamPosition(1, "e"), now=0)
    table.put(B, StreamPosition(1, "e"), now=1)
    table.put(A, StreamPosition(2, "e"), now=2)  # A is now the newest
    table.put(C, StreamPosition(1, "e"), now=3)
    assert table.get(B, now=3) is None
    assert table.get(A, now=3) == StreamPosition(2, "e")
    assert table.get(C, now=3) == StreamPosition(1, "e")
