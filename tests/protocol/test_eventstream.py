"""The SSE wire format and the position ids, without a network."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orbiter.model import StreamPosition
from orbiter.protocol.eventstream import (
    MAX_EVENT_ID,
    BadEventId,
    encode_positions,
    event,
    parse_positions,
)


def test_event_with_name_id_and_multiline_data() -> None:
    assert event(b"a\nb", name="subscribed", id="e:1") == (
        b"event: subscribed\nid: e:1\ndata: a\ndata: b\n\n"
    )
    assert event(b"[1]") == b"data: [1]\n\n"


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\0b"])
def test_event_refuses_line_breaks_in_fields(bad: str) -> None:
    with pytest.raises(ValueError, match="line break"):
        event(b"x", id=bad)
    with pytest.raises(ValueError, match="line break"):
        event(b"x", name=bad)


def test_positions_round_trip_in_channel_order() -> None:
    positions = [StreamPosition(12, "9f1c2a7b"), StreamPosition(0, "ab:c,d%e")]
    text = encode_positions(positions)
    assert text.startswith("9f1c2a7b:12,")
    assert "\n" not in text
    assert parse_positions(text, 2) == positions


@given(
    st.lists(
        st.builds(
            StreamPosition,
            st.integers(min_value=0, max_value=10**17),
            st.text(min_size=1, max_size=40),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_any_positions_round_trip(positions: list[StreamPosition]) -> None:
    text = encode_positions(positions)
    assert text.isascii()
    assert not any(c in text for c in "\r\n\0")
    assert parse_positions(text, len(positions)) == positions


@pytest.mark.parametrize(
    ("text", "count", "problem"),
    [
        ("e:1,e:2", 1, "holds 2 channel positions but the URL names 1"),
        ("e:1", 2, "holds 1 channel positions but the URL names 2"),
        ("zz", 1, "not 'epoch:offset'"),
        ("e:-1", 1, "not 'epoch:offset'"),
        ("e:01", 1, "not 'epoch:offset'"),
        ("e:1x", 1, "not 'epoch:offset'"),
        (":5", 1, "not 'epoch:offset'"),
        ("e 1:5", 1, "not 'epoch:offset'"),
        ("%ff:5", 1, "malformed epoch"),
        ("e:" + "9" * 19, 1, "not 'epoch:offset'"),
        ("e:1," * (MAX_EVENT_ID // 4 + 1), 1, "longer than"),
    ],
)
def test_bad_ids_are_refused_with_the_reason(text: str, count: int, problem: str) -> None:
    with pytest.raises(BadEventId, match=problem):
        parse_positions(text, count)


@given(st.text(max_size=60), st.integers(min_value=1, max_value=4))
def test_parse_never_fails_otherwise(text: str, count: int) -> None:
    try:
        positions = parse_positions(text, count)
    except BadEventId:
        return
    assert len(positions) == count
    assert all(p.offset >= 0 and p.epoch for p in positions)
