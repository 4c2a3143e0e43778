"""Each client address's share of the STOMP queues: counted by address, forgotten when empty."""

from __future__ import annotations

import pytest

from orbiter.services.stomp.shares import ClientShares


def test_bytes_are_counted_by_address_and_an_empty_address_is_forgotten():
    shares = ClientShares()
    assert shares.held("192.0.2.1") == 0
    assert "192.0.2.1" not in shares  # reading makes no entry
    shares.take("192.0.2.1", 100)
    shares.take("192.0.2.1", 50)
    shares.take("2001:db8::1", 7)
    assert (shares.held("192.0.2.1"), shares.held("2001:db8::1")) == (150, 7)
    assert len(shares) == 2
    shares.release("192.0.2.1", 100)
    assert shares.held("192.0.2.1") == 50
    assert "192.0.2.1" in shares
    shares.release("192.0.2.1", 50)
    assert "192.0.2.1" not in shares
    assert len(shares) == 1
    shares.release("2001:db8::1", 7)
    assert len(shares) == 0


def test_releasing_bytes_never_taken_is_a_bug_not_a_negative_share():
    shares = ClientShares()
    with pytest.raises(KeyError):
        shares.release("192.0.2.1", 1)
