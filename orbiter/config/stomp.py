"""Settings of the embedded STOMP broker (the ``[stomp]`` table).

``orbiter.config.settings`` reads the table through :func:`stomp_settings_from`,
which checks every key and raises :class:`StompSettingsError` naming it.
The seed's INI line ``[listen] stomp://:61613`` maps onto
``StompSettings(listen=":61613")`` (see :func:`parse_listen`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from orbiter.config.values import SettingsError, kinds_of, scalars
from orbiter.protocol.stomp import HEART_BEAT_MAX, HEART_BEAT_MIN


class StompSettingsError(SettingsError):
    """A ``[stomp]`` setting is invalid; the message names the key."""


@dataclass(frozen=True, slots=True)
class StompSettings:
    #: TCP listener: ``"host:port"``, ``":port"`` (the server's host), ``"port"``; "" = off.
    listen: str = ""
    #: STOMP over WebSocket at ``websocket_path``, and over SockJS at ``<path>/sockjs``.
    websocket: bool = True
    websocket_path: str = "/stomp"
    #: ``<topic_prefix><name>`` is the orbiter channel ``<channel_prefix><name>``.
    topic_prefix: str = "/topic/"
    channel_prefix: str = ""
    #: ``<queue_prefix><name>``: a queue (each message to one consumer), local to this node.
    queue_prefix: str = "/queue/"
    #: Messages a queue holds while it has no consumer with room; past it SEND is refused.
    max_queue_length: int = 10_000
    #: Bytes one queue holds (messages waiting, and held unacknowledged by consumers),
    #: and all queues together; a SEND past either is refused (an ERROR naming the key).
    max_queue_bytes: int = 4 * 1024 * 1024
    max_total_queue_bytes: int = 64 * 1024 * 1024
    #: Bytes the messages one client address sent hold in queues (until consumed,
    #: acknowledged or expired), over all its connections, past and present (the address
    #: as ``limits.max_connections_per_ip`` sees it); a SEND past it is refused, so that
    #: one client cannot take the whole total from everyone by reconnecting or opening
    #: more connections. A quarter of the default total: four addresses must fill theirs
    #: before the total refuses anyone, and one can still fill four queues.
    max_client_queue_bytes: int = 16 * 1024 * 1024
    #: Seconds a queue message waits for a consumer before it is dropped; its own
    #: ``expires`` (epoch ms) or ``expiration`` (ms to live) header may make it shorter.
    message_ttl: float = 3600.0
    #: Queues (with messages or consumers) at once; a SEND or SUBSCRIBE that would add one more
    #: is refused.
    max_queues: int = 10_000
    #: Unacknowledged messages one ``client``-mode subscription holds (its prefetch).
    max_unacked: int = 1_000
    #: Open transactions per connection, and frames buffered in one.
    max_transactions: int = 16
    max_transaction_frames: int = 1_000
    #: Headers per frame, and bytes per header line; bodies: ``limits.max_message_size``.
    max_headers: int = 64
    max_header_line: int = 8_192
    #: The CONNECTED ``heart-beat`` (seconds): how often the broker can beat, and
    #: how often it wants the client to; a client silent for twice that is dropped.
    #: 0 (none) or within the range a CONNECT's values are held to (0.1 s to one hour).
    heartbeat_send: float = 10.0
    heartbeat_receive: float = 10.0
    #: Seconds a connection may take to send CONNECT before it is dropped.
    connect_timeout: float = 10.0
    #: Allow connections without credentials (when an API key or auth is configured).
    anonymous: bool = True


def stomp_settings_from(table: dict[str, Any]) -> StompSettings:
    """Build settings from a parsed ``[stomp]`` table."""
    table = dict(table)
    if type(table.get("listen")) is int:
        table["listen"] = str(table["listen"])
    values = scalars(table, "stomp", kinds_of(StompSettings))
    settings = replace(StompSettings(), **values)
    if settings.listen:
        parse_listen(settings.listen, "127.0.0.1")
    for name in ("topic_prefix", "queue_prefix", "websocket_path"):
        if not getattr(settings, name).startswith("/"):
            raise StompSettingsError(f"'stomp.{name}' must start with '/'")
    if settings.topic_prefix.startswith(settings.queue_prefix) or settings.queue_prefix.startswith(
        settings.topic_prefix
    ):
        raise StompSettingsError("'stomp.topic_prefix' and 'stomp.queue_prefix' must differ")
    if settings.channel_prefix.startswith("$"):
        raise StompSettingsError("'stomp.channel_prefix' must not start with '$' (server channels)")
    for f in fields(StompSettings):
        value = getattr(settings, f.name)
        if type(value) in (int, float) and value < 0:
            raise StompSettingsError(f"'stomp.{f.name}' must not be negative")
    for name in (
        "max_queue_length",
        "max_queue_bytes",
        "max_total_queue_bytes",
        "max_client_queue_bytes",
        "max_queues",
        "max_unacked",
        "max_headers",
        "max_header_line",
        "message_ttl",
    ):
        if getattr(settings, name) == 0:
            raise StompSettingsError(f"'stomp.{name}' must be positive")
    low, high = HEART_BEAT_MIN / 1000, HEART_BEAT_MAX / 1000
    for name in ("heartbeat_send", "heartbeat_receive"):
        value = getattr(settings, name)
        if value and not low <= value <= high:
            raise StompSettingsError(
                f"'stomp.{name}' must be 0 (none) or from {low:g} to {high:g} seconds"
            )
    return settings


def parse_listen(listen: str, default_host: str) -> tuple[str, int]:
    """``"host:port"``, ``":port"`` or ``"port"`` as (host, port); ``[v6]:port`` too."""
    host, sep, port_text = listen.rpartition(":")
    if not sep:
        host = ""
    host = host.strip("[]") or default_host
    digits = port_text.isascii() and port_text.isdigit() and len(port_text) <= 5
    if not digits or not 0 <= int(port_text) <= 65535:
        raise StompSettingsError(
            f"'stomp.listen' {listen!r} must be 'host:port', ':port' or a port (0-65535)"
        )
    return host, int(port_text)
