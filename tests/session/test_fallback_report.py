"""A ``connect`` that carries a transport-fallback report, in a session without a network:
counted by its first and last transport and logged at DEBUG with the client and its IP; a
malformed report costs neither the connection nor a counter, and its line is bounded."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pytest

from orbiter.config.settings import AuthSettings, Config
from orbiter.engine.memory import MemoryBroker, MemoryPresenceStore
from orbiter.logs import EVENTS_LOGGER, Counters
from orbiter.services.pubsub import PubSub
from orbiter.session.session import ClientSession
from tests.session.test_session import send
from tests.support.keys import SECRET

REPORT = {
    "to": "xhr-streaming",
    "failed": [{"transport": "websocket", "reason": "closed 1006"}],
}


async def _connect(fields: dict[str, Any]) -> tuple[ClientSession, Counters, dict[str, Any]]:
    counters = Counters()
    pubsub = PubSub(Config(), MemoryBroker(), MemoryPresenceStore(), counters)
    session = ClientSession(pubsub, Config(), peer="198.51.100.7", counters=counters)
    [reply] = await send(session, {"id": 1, "op": "connect", **fields})
    return session, counters, reply


def _lines(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == event]


async def test_a_fallback_is_counted_and_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, EVENTS_LOGGER)
    session, counters, reply = await _connect({"fallback": REPORT})
    assert "result" in reply
    assert counters.fallbacks == {("websocket", "xhr-streaming"): 1}
    assert dict(counters) == {}  # not a refusal or a limit hit (/api/stats)
    [line] = _lines(caplog, "fallback")
    assert line.levelno == logging.DEBUG
    fields = {name: getattr(line, name) for name in ("client", "ip", "transport", "chain")}
    assert fields == {
        "client": session.client_id,
        "ip": "198.51.100.7",
        "transport": "xhr-streaming",
        "chain": "websocket>xhr-streaming",
    }
    assert line.reasons == "websocket: closed 1006"  # type: ignore[attr-defined]
    assert f"client={session.client_id}" in line.getMessage()


async def test_a_connect_without_a_report_counts_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, EVENTS_LOGGER)
    _, counters, reply = await _connect({})
    assert "result" in reply
    assert not counters.fallbacks
    assert not _lines(caplog, "fallback")
    assert not _lines(caplog, "fallback_ignored")


async def test_it_is_counted_but_not_logged_above_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, EVENTS_LOGGER)
    _, counters, _ = await _connect({"fallback": REPORT})
    assert counters.fallbacks == {("websocket", "xhr-streaming"): 1}
    assert not _lines(caplog, "fallback")


HOSTILE: list[Any] = [
    "websocket",
    {"to": "x" * 100_000, "failed": [{"transport": "websocket"}]},
    {"to": "eventsource", "failed": [{"transport": f"t{i}"} for i in range(10_000)]},
    {"to": "eventsource", "failed": [{"transport": "websocket", "reason": "y" * 100_000}]},
    {"to": "eventsource", "failed": [{"transport": "websocket", "reason": "a\nevent=open"}]},
    {"to": "eventsource", "failed": [{"transport": "websocket\n", "reason": "r"}]},
]


@pytest.mark.parametrize("report", HOSTILE)
async def test_a_malformed_report_is_ignored_without_a_series_or_a_long_line(
    caplog: pytest.LogCaptureFixture, report: Any
) -> None:
    caplog.set_level(logging.DEBUG, EVENTS_LOGGER)
    session, counters, reply = await _connect({"fallback": report})
    assert "result" in reply
    assert not session.closed
    assert not counters.fallbacks
    assert not _lines(caplog, "fallback")
    [ignored] = _lines(caplog, "fallback_ignored")
    assert ignored.client == session.client_id  # type: ignore[attr-defined]
    assert "\n" not in ignored.getMessage()
    assert len(ignored.getMessage()) < 400


async def test_a_refused_connect_counts_no_fallback() -> None:
    """Only an authenticated connection's report counts: a client refused at connect
    cannot add to the counters with reports."""
    counters = Counters()
    config = replace(Config(), auth=AuthSettings(secret=SECRET))
    pubsub = PubSub(config, MemoryBroker(), MemoryPresenceStore(), counters)
    session = ClientSession(pubsub, config, peer="198.51.100.7", counters=counters)
    [reply] = await send(session, {"id": 1, "op": "connect", "fallback": REPORT})
    assert reply["error"]["code"] == 101
    assert not counters.fallbacks
