"""The named bench presets, and what a scenario is."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

#: ``ws``: WebSocket; ``sse``: Server-Sent Events; ``longpoll``: orbiter's ``GET /poll``;
#: ``sockjs``: orbiter's native protocol over SockJS's WebSocket transport.
Transport = Literal["ws", "sse", "longpoll", "sockjs"]
TRANSPORTS: tuple[Transport, ...] = ("ws", "sse", "longpoll", "sockjs")
Route = Literal["http", "batch", "native"]


@dataclass(frozen=True)
class Scenario:
    name: str
    #: Subscriber connections, and the channels they spread over (subscriber
    #: ``i`` is on channel ``i % channels``; publication ``seq`` goes to
    #: channel ``seq % channels``).
    subscribers: int
    channels: int
    messages: int
    transport: Transport = "ws"
    #: Publications per second; 0: as fast as the server accepts them.
    rate: float = 0
    route: Route = "http"
    #: Requests in flight per publisher connection (HTTP pipelining, native commands).
    depth: int = 4
    #: Publications per request on the ``batch`` and ``native`` routes.
    batch: int = 1
    #: Bytes of payload per publication (the marker plus padding).
    payload: int = 100
    timeout: float = 120.0
    #: Once everything is published, the run ends when every expected delivery
    #: has arrived, or nothing has for ``settle`` seconds, or at ``timeout``.
    settle: float = 5.0
    #: Seconds during which every subscriber, once subscribed, disconnects and
    #: connects again (``churn``); 0: subscribers stay.
    churn: float = 0.0

    def __post_init__(self) -> None:
        if not 20 <= self.payload <= 8000:
            raise ValueError("payload must be between 20 and 8000 bytes")
        if self.subscribers < 0 or self.channels < 1 or self.messages < 0:
            raise ValueError("subscribers and messages must not be negative, channels at least 1")
        if self.depth < 1 or not 1 <= self.batch <= 10_000:
            raise ValueError("depth must be at least 1 and batch between 1 and 10000")

    @property
    def expected_deliveries(self) -> int:
        return self.messages * self.subscribers // max(self.channels, 1) if self.channels else 0


PRESETS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("idle", subscribers=10_000, channels=1, messages=0),
        Scenario("fanout", subscribers=2_000, channels=1, messages=2_000),
        Scenario("fanout-rate", subscribers=2_000, channels=1, messages=2_000, rate=200),
        # Unsaturated: the latency of a server with time to spare (with --nodes 2, the
        # latency across nodes beside one node's).
        Scenario("latency", subscribers=2_000, channels=1, messages=300, rate=10),
        Scenario("many-channels", subscribers=2_000, channels=2_000, messages=20_000, depth=8),
        Scenario(
            "many-channels-batch",
            subscribers=2_000,
            channels=2_000,
            messages=20_000,
            route="batch",
            batch=100,
            depth=2,
        ),
        Scenario(
            "many-channels-native",
            subscribers=2_000,
            channels=2_000,
            messages=20_000,
            route="native",
            depth=64,
        ),
        Scenario("churn", subscribers=200, channels=50, messages=0, churn=10.0),
        Scenario("sse-fanout", subscribers=2_000, channels=1, messages=2_000, transport="sse"),
        # At a fixed rate: published as fast as accepted, the publisher waits
        # behind 1,000 polls per publication and the run measures the queue.
        Scenario(
            "longpoll",
            subscribers=1_000,
            channels=1,
            messages=40,
            rate=2,
            transport="longpoll",
        ),
    )
}


def preset(name: str, **overrides: object) -> Scenario:
    try:
        base = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
