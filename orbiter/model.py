"""Value types shared by every layer: stream positions, publications, presence;
and the refusal every connection limit raises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: A JSON value as decoded by orjson.
JSON = Any


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """Where a channel's stream stands: the last offset, within one epoch.

    Offsets grow by one per publication. The epoch changes whenever the
    stream's history is lost (restart of the memory engine, expiry), so a
    position from another epoch cannot be recovered from.
    """

    offset: int
    epoch: str


@dataclass(slots=True, init=False)
class Publication:
    """One message published to a channel, with its place in the stream.

    Treated as immutable, but not ``frozen``: a frozen dataclass sets each
    field through ``object.__setattr__``, and one is made per publication
    (what that costs: ``docs/benchmarks.md``). For the same reason its
    ``__init__`` is written out: compiled with mypyc, what a dataclass
    generates stays interpreted (23 bytecodes a publication).
    """

    channel: str
    offset: int
    epoch: str
    data: JSON
    time: float
    #: Name-value pairs the publisher attached (a STOMP SEND's own headers, say), if any.
    tags: dict[str, str] | None = None
    #: What keeping it counts against ``history.max_bytes`` (set by the engine that keeps it).
    size: int = 0

    def __init__(
        self,
        channel: str,
        offset: int,
        epoch: str,
        data: JSON,
        time: float,
        tags: dict[str, str] | None = None,
        size: int = 0,
    ) -> None:
        self.channel = channel
        self.offset = offset
        self.epoch = epoch
        self.data = data
        self.time = time
        self.tags = tags
        self.size = size


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """What presence reports about one subscribed client."""

    client: str
    user: str | None
    #: What the app attached to the connection (JSON), if anything.
    info: JSON = None


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """A user joined a channel (their first client) or left it (their last)."""

    channel: str
    joined: bool
    client: ClientInfo


class TooManyConnections(Exception):
    """``limits.max_connections`` or ``limits.max_connections_per_ip`` is reached.

    The node raises it; the transports and the STOMP broker answer it, each in
    its own protocol, so it lives below all of them.
    """
