"""The native orbiter protocol, server side, without I/O.

A client sends JSON commands, one per line; one transport message (a
WebSocket frame, a SockJS message) may carry several lines. Every command
has an ``id`` chosen by the client and an ``op``; the server answers each
with a reply carrying the same ``id`` and either ``result`` or ``error``.
The server also sends pushes (``{"push": "pub", ...}``), which have no id.
The full description is ``docs/protocol.md``.

:class:`ServerProtocol` turns received text into command objects (or
:class:`CommandError` events for what cannot be accepted) and knows whether
the connection has said ``connect`` yet. The ``encode_*`` functions turn
replies and pushes into the bytes a transport sends. Nothing here touches a
socket or an event loop.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

import orjson

from orbiter.model import JSON, PresenceEvent, Publication, StreamPosition
from orbiter.protocol.live import (
    Attach,
    BadLiveMessage,
    Call,
    Return,
    Rpc,
    parse_attach,
    parse_call,
    parse_return,
    parse_rpc,
)

PROTOCOL_VERSION = 1
MAX_CHANNEL_LENGTH = 255
#: A publication's tags: at most this many, names and values at most this long.
MAX_TAGS = 32
MAX_TAG_NAME = 128
MAX_TAG_VALUE = 1024
#: Tag names a STOMP MESSAGE's own headers use (``orbiter-*`` too): a tag may not take
#: them, in any letter case (:func:`is_reserved_tag`).
RESERVED_TAGS = frozenset(
    {
        "ack",
        "content-length",
        "content-type",
        "destination",
        "message-id",
        "receipt",
        "receipt-id",
        "redelivered",
        "subscription",
        "transaction",
    }
)
RESERVED_TAG_PREFIX = "orbiter-"
_MAX_ID = 2**53 - 1


class ErrorCode(enum.IntEnum):
    """Error codes carried in ``{"error": {"code": ..., "message": ...}}`` replies."""

    INTERNAL = 100
    UNAUTHORIZED = 101
    PERMISSION_DENIED = 103
    METHOD_NOT_FOUND = 104
    ALREADY_SUBSCRIBED = 105
    LIMIT_EXCEEDED = 106
    BAD_REQUEST = 107
    NOT_CONNECTED = 108
    ALREADY_CONNECTED = 109
    NOT_SUBSCRIBED = 110
    #: The token has expired: fetch a fresh one (``refresh``, or reconnect with it).
    TOKEN_EXPIRED = 111
    #: Live elements: no such mount or element here, or the method is not exposed.
    NOT_EXPOSED = 112
    #: Live elements: the method raised; the error names the exception's ``type``.
    CALL_FAILED = 113
    #: Live elements: the method did not finish within ``live.call_timeout``.
    CALL_TIMEOUT = 114
    #: The RPC proxy: the app server could not be reached, or answered what is not an answer.
    RPC_UNAVAILABLE = 115


class DisconnectCode(enum.IntEnum):
    """WebSocket close codes (and SockJS ``c[...]`` codes) orbiter uses.

    1001 and 3000-3499: the client should reconnect and recover from history.
    3500-3999: the client must not reconnect without changing something.
    """

    SHUTDOWN = 1001
    SLOW_CONSUMER = 3001
    #: The connection's token expired before a ``refresh``: reconnect with a fresh one.
    TOKEN_EXPIRED = 3002
    #: ``limits.max_connections`` or ``max_connections_per_ip`` reached: retry later.
    TOO_MANY_CONNECTIONS = 3003
    #: The engine lost a subscribed channel's stream (a Redis restarted without its data):
    #: its publications went on in a new epoch. Reconnecting with the position held is
    #: answered with ``recovered: false``, so the app learns that it missed some.
    STREAM_LOST = 3004
    CONNECT_FAILED = 3501
    #: No token, or a forged / malformed / wrongly signed one.
    UNAUTHORIZED = 3502
    #: Authenticated, but refused (the app's connect hook, a key not granted).
    FORBIDDEN = 3503

    @property
    def reconnect(self) -> bool:
        return self < 3500


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class Connect:
    id: int
    user: str | None
    session: str | None
    location: str | None
    key: str | None
    since: StreamPosition | None
    info: JSON = None
    #: The connection token (JWT), when the server needs one.
    token: str | None = None
    #: The client's report of the transports it tried first, unchecked: the session
    #: reads it with :func:`orbiter.protocol.fallback.parse_fallback` (a bad one is
    #: ignored, never the connection).
    fallback: JSON = None


@dataclass(frozen=True, slots=True)
class Subscribe:
    id: int
    channel: str
    since: StreamPosition | None
    #: A subscription token, for private channels.
    token: str | None = None


@dataclass(frozen=True, slots=True)
class Refresh:
    """A fresh connection token for a live connection, before the old one expires."""

    id: int
    token: str


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    id: int
    channel: str


@dataclass(slots=True, init=False)
class Publish:
    """Treated as immutable, but not ``frozen``, with its ``__init__`` written out: one is
    made per ``publish`` command, and a frozen dataclass's generated ``__init__`` (run
    interpreted even in the compiled build) sets each field through
    ``object.__setattr__``, as :class:`~orbiter.model.Publication` explains."""

    id: int
    channel: str
    data: JSON
    tags: dict[str, str] | None = None

    def __init__(
        self, id_: int, channel: str, data: JSON, tags: dict[str, str] | None = None
    ) -> None:
        self.id = id_
        self.channel = channel
        self.data = data
        self.tags = tags


@dataclass(frozen=True, slots=True)
class Presence:
    id: int
    channel: str


@dataclass(frozen=True, slots=True)
class Ping:
    id: int


#: The most publications one ``history`` reply holds.
MAX_HISTORY_PAGE = 1000


@dataclass(frozen=True, slots=True)
class History:
    """A page of a subscribed channel's history: the newest ``limit``, or those before
    offset ``before`` (paging back)."""

    id: int
    channel: str
    limit: int
    before: int | None = None


Command = Connect | Subscribe | Unsubscribe | Publish | Presence | Ping | Refresh | History


@dataclass(frozen=True, slots=True)
class CommandError:
    """A received command that cannot be accepted; ``id`` is None if unknown."""

    id: int | None
    code: ErrorCode
    message: str


#: What a received line may be: a command, a live-element op (``protocol/live.py``), an error.
Received = Command | Attach | Call | Rpc | Return | CommandError


class Refusal(Exception):
    """A command is refused; becomes an error reply with ``code`` and ``message``."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class State(enum.Enum):
    AWAITING_CONNECT = "awaiting connect"
    CONNECTED = "connected"


class ServerProtocol:
    """Parses and validates the commands of one client connection.

    ``connect`` must come first; a second ``connect`` is refused. A batch
    that holds ``connect`` followed by other commands is accepted in order.
    """

    def __init__(self) -> None:
        self.state = State.AWAITING_CONNECT

    def receive(self, data: str | bytes) -> list[Received]:
        """Parse one transport message, holding one or more lines of JSON."""
        if isinstance(data, str):
            data = data.encode()
        events: list[Received] = []
        for line in data.split(b"\n"):
            if line.strip():
                events.append(self._receive_line(line))
        if not events:
            events.append(CommandError(None, ErrorCode.BAD_REQUEST, "empty message"))
        return events

    def _receive_line(self, line: bytes) -> Received:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as malformed:
            return CommandError(None, ErrorCode.BAD_REQUEST, f"malformed JSON: {malformed}")
        if not isinstance(obj, dict):
            return CommandError(None, ErrorCode.BAD_REQUEST, "a command must be a JSON object")
        if obj.get("op") == "return":  # a live widget's answer: no id, no reply
            if self.state is State.AWAITING_CONNECT:
                return CommandError(None, ErrorCode.NOT_CONNECTED, "'return' before 'connect'")
            try:
                return parse_return(obj)
            except BadLiveMessage as bad_live:
                return CommandError(None, ErrorCode.BAD_REQUEST, str(bad_live))
        raw_id = obj.get("id")
        if type(raw_id) is not int or not 0 < raw_id <= _MAX_ID:
            return CommandError(
                None, ErrorCode.BAD_REQUEST, "command 'id' must be a positive integer"
            )
        try:
            command = _parse_command(raw_id, obj)
        except Refusal as exc:
            return CommandError(raw_id, exc.code, exc.message)
        if isinstance(command, Connect):
            if self.state is State.CONNECTED:
                return CommandError(raw_id, ErrorCode.ALREADY_CONNECTED, "already connected")
            self.state = State.CONNECTED
        elif self.state is State.AWAITING_CONNECT and not isinstance(command, Ping):
            return CommandError(
                raw_id, ErrorCode.NOT_CONNECTED, "send 'connect' before any other command"
            )
        return command


def _parse_command(id_: int, obj: dict[str, Any]) -> Command | Attach | Call | Rpc:
    op = obj.get("op")
    if op == "subscribe":
        return Subscribe(id_, _channel(obj), _since(obj.get("since")), _optional_str(obj, "token"))
    if op == "publish":
        if "data" not in obj:
            raise Refusal(ErrorCode.BAD_REQUEST, "'publish' needs 'data'")
        try:
            tags = validate_tags(obj.get("tags"))
        except ValueError as exc:
            raise Refusal(ErrorCode.BAD_REQUEST, str(exc)) from None
        return Publish(id_, _channel(obj), obj["data"], tags)
    if op == "unsubscribe":
        return Unsubscribe(id_, _channel(obj))
    if op == "ping":
        return Ping(id_)
    if op == "presence":
        return Presence(id_, _channel(obj))
    if op == "history":
        return _history(id_, obj)
    if op == "refresh":
        token = _optional_str(obj, "token")
        if not token:
            raise Refusal(ErrorCode.BAD_REQUEST, "'refresh' needs 'token', a non-empty string")
        return Refresh(id_, token)
    if op == "call" or op == "attach" or op == "rpc":
        try:
            if op == "call":
                return parse_call(id_, obj)
            return parse_attach(id_, obj) if op == "attach" else parse_rpc(id_, obj)
        except BadLiveMessage as bad_live:
            raise Refusal(ErrorCode.BAD_REQUEST, str(bad_live)) from None
    if op == "connect":
        return Connect(
            id_,
            user=_optional_str(obj, "user"),
            session=_optional_str(obj, "session", allow_int=True),
            location=_optional_str(obj, "location"),
            key=_optional_str(obj, "key"),
            since=_since(obj.get("since")),
            info=obj.get("info"),
            token=_optional_str(obj, "token"),
            fallback=obj.get("fallback"),
        )
    if not isinstance(op, str):
        raise Refusal(ErrorCode.BAD_REQUEST, "command 'op' must be a string")
    raise Refusal(ErrorCode.METHOD_NOT_FOUND, f"unknown op {op[:40]!r}")


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def validate_channel(channel: object) -> str:
    """Return ``channel`` if it is a well-formed channel name, else raise ValueError."""
    if not isinstance(channel, str) or not channel:
        raise ValueError("'channel' must be a non-empty string")
    if len(channel) > MAX_CHANNEL_LENGTH:
        raise ValueError(f"'channel' is longer than {MAX_CHANNEL_LENGTH} characters")
    # A printable name has no control character; only others need the search.
    if not channel.isprintable() and _CONTROL.search(channel) is not None:
        raise ValueError("'channel' contains a control character")
    return channel


#: Channels whose names start with this are the server's (Orbited key channels,
#: ``$key:...``, are joined by connecting as the key): no client names one.
RESERVED_PREFIX = "$"


def reserved_refusal(channel: str) -> str | None:
    """Why a client may not subscribe, publish or read ``channel`` by name, or None.

    The one reserved-name rule of every route (native, STOMP, SSE, long polls).
    """
    if channel.startswith(RESERVED_PREFIX):
        return f"channel {channel!r} is reserved for the server"
    return None


def is_reserved_tag(name: str) -> bool:
    """True if no tag may be called ``name``: a STOMP MESSAGE's own header or ``orbiter-*``.

    Matched in any letter case: clients that fold header names (many do) would
    otherwise read ``Content-Length`` or ``Destination`` as the real one.
    """
    folded = name.lower()
    return folded in RESERVED_TAGS or folded.startswith(RESERVED_TAG_PREFIX)


def validate_tags(tags: object) -> dict[str, str] | None:
    """Return ``tags`` (None if absent or empty) if they are well-formed, else raise ValueError.

    Tags are name-value strings a publication carries to every subscriber
    (a STOMP subscriber gets each as a MESSAGE header), so a name holds no
    ``:`` and neither holds a control character: STOMP 1.0 has no way to
    escape them.
    """
    if tags is None:
        return None
    if not isinstance(tags, dict):
        raise ValueError("'tags' must be an object of strings")
    if len(tags) > MAX_TAGS:
        raise ValueError(f"'tags' holds more than {MAX_TAGS} tags")
    for name, value in tags.items():
        if not isinstance(value, str):
            raise ValueError(f"tag {name[:40]!r} must be a string")
        if not name or len(name) > MAX_TAG_NAME or ":" in name or _CONTROL.search(name):
            raise ValueError(
                f"tag name {name[:40]!r} must be 1 to {MAX_TAG_NAME} characters, "
                "with no ':' or control character"
            )
        if is_reserved_tag(name):
            raise ValueError(
                f"tag name {name!r} is reserved (a STOMP MESSAGE header, in any letter case)"
            )
        if len(value) > MAX_TAG_VALUE or _CONTROL.search(value):
            raise ValueError(
                f"tag {name!r} must be at most {MAX_TAG_VALUE} characters, "
                "with no control character"
            )
    return tags or None


def _channel(obj: dict[str, Any]) -> str:
    try:
        return validate_channel(obj.get("channel"))
    except ValueError as exc:
        raise Refusal(ErrorCode.BAD_REQUEST, str(exc)) from None


def _optional_str(obj: dict[str, Any], name: str, *, allow_int: bool = False) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if allow_int and type(value) is int:
        return str(value)
    if not isinstance(value, str):
        raise Refusal(ErrorCode.BAD_REQUEST, f"'{name}' must be a string")
    return value


def _history(id_: int, obj: dict[str, Any]) -> History:
    limit, before = obj.get("limit", 50), obj.get("before")
    if type(limit) is not int or not 0 < limit <= MAX_HISTORY_PAGE:
        raise Refusal(
            ErrorCode.BAD_REQUEST, f"'limit' must be an integer from 1 to {MAX_HISTORY_PAGE}"
        )
    if before is not None and (type(before) is not int or before < 1):
        raise Refusal(ErrorCode.BAD_REQUEST, "'before' must be a positive integer (an offset)")
    return History(id_, _channel(obj), limit, before)


def _since(value: object) -> StreamPosition | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Refusal(ErrorCode.BAD_REQUEST, "'since' must be an object {offset, epoch}")
    offset, epoch = value.get("offset"), value.get("epoch")
    if type(offset) is not int or offset < 0:
        raise Refusal(ErrorCode.BAD_REQUEST, "'since.offset' must be a non-negative integer")
    if not isinstance(epoch, str):
        raise Refusal(ErrorCode.BAD_REQUEST, "'since.epoch' must be a string")
    return StreamPosition(offset, epoch)


# --------------------------------------------------------------------------- encoding


def encode_reply(id_: int, result: dict[str, Any]) -> bytes:
    return orjson.dumps({"id": id_, "result": result})


def encode_published(id_: int, offset: int, epoch: str) -> bytes:
    """The reply to a ``publish``: :func:`encode_reply`'s bytes for the result ``{"offset":
    offset, "epoch": epoch}``, written out from a template (one per publish command; no
    dict to build)."""
    return b'{"id":%d,"result":{"offset":%d,"epoch":%s}}' % (id_, offset, orjson.dumps(epoch))


def encode_error(id_: int | None, code: ErrorCode, message: str) -> bytes:
    return orjson.dumps({"id": id_, "error": {"code": int(code), "message": message}})


def encode_publication(pub: Publication) -> bytes:
    """The push for one publication; encoded once and sent to every subscriber."""
    push = {"push": "pub", "channel": pub.channel, "offset": pub.offset, "data": pub.data}
    if pub.tags:
        push["tags"] = pub.tags
    return orjson.dumps(push)


def encode_presence(event: PresenceEvent) -> bytes:
    """A join or leave push; encoded once and sent to every subscriber."""
    push: dict[str, Any] = {
        "push": "join" if event.joined else "leave",
        "channel": event.channel,
        "user": event.client.user,
    }
    if event.joined:
        push["info"] = event.client.info
    return orjson.dumps(push)


def encode_unsubscribed(channel: str, reason: str) -> bytes:
    """The server ended a subscription (e.g. a refreshed token no longer grants it)."""
    return orjson.dumps({"push": "unsubscribed", "channel": channel, "reason": reason})


def publication_fields(pub: Publication) -> dict[str, Any]:
    """A publication as it appears inside replies (recovery, history)."""
    fields = {"offset": pub.offset, "data": pub.data, "time": pub.time}
    if pub.tags:
        fields["tags"] = pub.tags
    return fields
