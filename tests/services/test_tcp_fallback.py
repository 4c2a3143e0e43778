"""The TCP proxy's fallback reports (``record_fallback``, ``parse_fallback_text``, the SockJS
connect message's ``fallback``): a good report counts once by (first, to) and logs one
DEBUG line; a bad one, of any shape or size, counts nothing, makes no new counter key and
logs one short ``fallback_ignored`` line."""

from __future__ import annotations

import logging
from functools import partial

import orjson
import pytest

from orbiter.logs import Counters, EventLog
from orbiter.protocol.fallback import MAX_REPORT_TEXT, parse_fallback, parse_fallback_text
from orbiter.services.tcp_proxy import record_fallback
from orbiter.transports.tcp_sockjs import parse_connect

GOOD = {"to": "xhr-streaming", "failed": [{"transport": "websocket", "reason": "closed 1006"}]}


def _events(caplog: pytest.LogCaptureFixture) -> EventLog:
    logger = logging.getLogger("test.tcp.fallback")
    caplog.set_level(logging.DEBUG, logger=logger.name)
    return EventLog(logger=logger)


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [dict(record.__dict__) for record in caplog.records]


def test_a_good_report_counts_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    counters, events = Counters(), _events(caplog)
    text = orjson.dumps(GOOD).decode()
    record_fallback(counters, events, "page1", "10.0.0.1", partial(parse_fallback_text, text))
    assert counters.fallbacks == {("websocket", "xhr-streaming"): 1}
    [line] = _lines(caplog)
    assert (line["event"], line["client"], line["ip"]) == ("fallback", "tcp:page1", "10.0.0.1")
    assert (line["chain"], line["reasons"]) == (
        "websocket>xhr-streaming",
        "websocket: closed 1006",
    )
    assert line["levelno"] == logging.DEBUG


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '"websocket"',
        orjson.dumps({**GOOD, "to": "carrier-pigeon"}).decode(),
        orjson.dumps({"to": "xhr-polling", "failed": [{"transport": "x" * 500}]}).decode(),
        orjson.dumps({**GOOD, "failed": []}).decode(),
        orjson.dumps({**GOOD, "failed": [{"transport": "websocket", "reason": "a\nb"}]}).decode(),
        " " * (MAX_REPORT_TEXT - len(orjson.dumps(GOOD))) + orjson.dumps(GOOD).decode() + " ",
    ],
)
def test_a_bad_report_is_ignored_with_a_short_line(
    caplog: pytest.LogCaptureFixture, text: str
) -> None:
    counters, events = Counters(), _events(caplog)
    record_fallback(counters, events, None, "10.0.0.1", partial(parse_fallback_text, text))
    assert counters.fallbacks == {}  # no series, not even a zero one
    [line] = _lines(caplog)
    assert (line["event"], line["client"]) == ("fallback_ignored", "tcp")
    assert len(str(line["problem"])) <= 200


def test_the_text_is_bounded_before_it_is_parsed() -> None:
    padded = orjson.dumps(GOOD).decode().ljust(MAX_REPORT_TEXT)
    assert parse_fallback_text(padded).to == "xhr-streaming"  # at the bound: read
    with pytest.raises(ValueError, match=f"at most {MAX_REPORT_TEXT} characters"):
        parse_fallback_text(padded + " ")


def test_the_sockjs_connect_message_carries_the_report(caplog: pytest.LogCaptureFixture) -> None:
    message = {"type": "connect", "host": "127.0.0.1", "port": 6667, "session": "p1"}
    assert parse_connect(orjson.dumps(message).decode()).fallback is None
    connect = parse_connect(orjson.dumps({**message, "fallback": GOOD}).decode())
    assert connect.fallback == GOOD
    counters, events = Counters(), _events(caplog)
    record_fallback(counters, events, connect.session, "::1", partial(parse_fallback, GOOD))
    bad = partial(parse_fallback, {"to": "websocket", "failed": "everything"})
    record_fallback(counters, events, connect.session, "::1", bad)
    assert counters.fallbacks == {("websocket", "xhr-streaming"): 1}
    assert [line["event"] for line in _lines(caplog)] == ["fallback", "fallback_ignored"]
