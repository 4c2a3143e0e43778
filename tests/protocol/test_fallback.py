"""The checks of a client's transport-fallback report (``protocol/fallback.py``): what is
accepted, and that every malformed or oversized report is refused with its problem named."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orbiter.protocol.fallback import (
    MAX_FAILED,
    MAX_REASON,
    TRANSPORT_NAMES,
    FailedTransport,
    TransportFallback,
    parse_fallback,
)


def test_a_report_is_read_in_order() -> None:
    report = {
        "to": "xhr-polling",
        "failed": [
            {"transport": "websocket", "reason": "closed 1006"},
            {"transport": "xhr-streaming", "reason": "xhr-streaming failed: HTTP 502"},
        ],
        "later": "an unknown field is ignored",
    }
    fallback = parse_fallback(report)
    assert fallback == TransportFallback(
        "xhr-polling",
        (
            FailedTransport("websocket", "closed 1006"),
            FailedTransport("xhr-streaming", "xhr-streaming failed: HTTP 502"),
        ),
    )
    assert fallback.first == "websocket"
    assert fallback.chain == "websocket>xhr-streaming>xhr-polling"
    assert (
        fallback.reasons == "websocket: closed 1006; xhr-streaming: xhr-streaming failed: HTTP 502"
    )


def test_the_reason_is_optional_and_may_be_as_long_as_the_limit() -> None:
    longest = "r" * MAX_REASON
    report = {"to": "eventsource", "failed": [{"transport": "websocket"}]}
    assert parse_fallback(report).failed == (FailedTransport("websocket", ""),)
    report = {"to": "eventsource", "failed": [{"transport": "websocket", "reason": longest}]}
    assert parse_fallback(report).failed[0].reason == longest


def test_every_transport_but_one_may_have_failed() -> None:
    names = sorted(TRANSPORT_NAMES)
    failed = [{"transport": name} for name in names[:MAX_FAILED]]
    assert len(parse_fallback({"to": names[-1], "failed": failed}).failed) == MAX_FAILED
    with pytest.raises(ValueError, match="1 to 4 failures"):
        parse_fallback({"to": names[-1], "failed": [*failed, {"transport": names[0]}]})


BAD: list[tuple[Any, str]] = [
    ("websocket", "must be an object"),
    ([{"transport": "websocket"}], "must be an object"),
    ({"failed": [{"transport": "websocket"}]}, "'to' must be one of"),
    ({"to": "carrier-pigeon", "failed": [{"transport": "websocket"}]}, "not 'carrier-pigeon'"),
    ({"to": "WebSocket", "failed": [{"transport": "eventsource"}]}, "'to' must be one of"),
    ({"to": 7, "failed": [{"transport": "websocket"}]}, "not int"),
    ({"to": "eventsource"}, "must be a list"),
    ({"to": "eventsource", "failed": []}, "1 to 4 failures"),
    ({"to": "eventsource", "failed": {"transport": "websocket"}}, "must be a list"),
    ({"to": "eventsource", "failed": ["websocket"]}, "must be an object"),
    ({"to": "eventsource", "failed": [{"transport": "x" * 10_000}]}, "failed transport must"),
    ({"to": "eventsource", "failed": [{"transport": "websocket", "reason": 1006}]}, "string"),
    (
        {"to": "eventsource", "failed": [{"transport": "websocket", "reason": "r" * 121}]},
        "at most 120",
    ),
    (
        {"to": "eventsource", "failed": [{"transport": "websocket", "reason": "a\nlevel=x"}]},
        "no control character",
    ),
    (
        {"to": "eventsource", "failed": [{"transport": "websocket", "reason": "\x1b[31m"}]},
        "no control character",
    ),
]


@pytest.mark.parametrize(("report", "problem"), BAD)
def test_a_malformed_report_is_refused_naming_the_problem(report: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("[", r"\[")) as raised:
        parse_fallback(report)
    assert len(str(raised.value)) < 200  # a hostile value is never quoted whole


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: (
            st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
        ),
    )
)
def test_any_json_is_accepted_only_with_known_names_and_bounded_reasons(value: Any) -> None:
    for report in (value, {"to": "websocket", "failed": value}, {"to": value, "failed": []}):
        try:
            fallback = parse_fallback(report)
        except ValueError:
            continue
        assert fallback.to in TRANSPORT_NAMES
        assert 0 < len(fallback.failed) <= MAX_FAILED
        for failure in fallback.failed:
            assert failure.transport in TRANSPORT_NAMES
            assert len(failure.reason) <= MAX_REASON
            assert failure.reason.isprintable()
