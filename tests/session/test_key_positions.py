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


def test_a_new_connection_starts_where_the_running_one_has_written() -> None:
    table = KeyPositions(ttl=10, limit=100)
    table.put(A, StreamPosition(1, "e"), now=0)
    old = table.begin(A, now=1)
    assert old.position == StreamPosition(1, "e")  # resumed where the last one ended
    old.position = StreamPosition(2, "e")  # wrote one more
    new = table.begin(A, now=2)  # before the old one's end is seen
    assert new.position == StreamPosition(2, "e")  # not 1: that would send 2 again
    assert not table.current(A, old)
    assert table.current(A, new)
    new.position = StreamPosition(3, "e")
    table.end(A, old, now=3)  # a newer one runs: it goes on from the old one
    assert table.get(A, now=3) == StreamPosition(1, "e")
    table.end(A, new, now=4)
    assert table.get(A, now=4) == StreamPosition(3, "e")
    assert table.begin(B, now=4).position is None


def test_an_older_connection_ending_last_keeps_its_position_only_if_further() -> None:
    table = KeyPositions(ttl=10, limit=100)
    old = table.begin(A, now=0)
    old.position = StreamPosition(5, "e")
    new = table.begin(A, now=1)
    new.position = StreamPosition(6, "e")
    table.end(A, new, now=2)
    table.end(A, old, now=3)
    assert table.get(A, now=3) == StreamPosition(6, "e")
    again = table.begin(A, now=4)
    newer = table.begin(A, now=4)
    newer.position = StreamPosition(6, "e")
    table.end(A, newer, now=5)
    again.position = StreamPosition(7, "e")  # wrote on after the newer one ended
    table.end(A, again, now=6)
    assert table.get(A, now=6) == StreamPosition(7, "e")
