"""Who a connection is (:class:`Identity`), what it presented (:class:`Credentials`),
and why authenticating or authorizing it failed (:class:`AuthError`)."""

from __future__ import annotations

import enum
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field

from orbiter.model import JSON
from orbiter.protocol.keys import ConnectionKey


class Failure(enum.Enum):
    """Why an action was refused; each route maps it to its own codes."""

    #: No credentials, or they are not valid (forged, wrong signature, malformed).
    UNAUTHORIZED = "unauthorized"
    #: The token was valid but has expired: get a new one.
    EXPIRED = "expired"
    #: Authenticated, but not allowed to do this.
    FORBIDDEN = "forbidden"


class AuthError(Exception):
    """An authentication or permission failure, with a message naming the problem."""

    def __init__(self, failure: Failure, message: str) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a connection presented, as its transport saw it."""

    #: The TCP peer, for logs and per-IP limits.
    peer: str
    #: A connection token (JWT), from the ``connect`` command, ``?token=`` or
    #: ``Authorization: Bearer``; a STOMP CONNECT's ``passcode``.
    token: str | None = None
    #: A login name offered besides the token (STOMP ``login``); passed to hooks only.
    login: str | None = None
    #: The browser's request headers that app-server hooks receive (Cookie, ...).
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Which route the connection came by: "websocket", "sockjs", "sse", "stomp", ...
    transport: str = ""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who an authenticated connection is, taken from its token or the app's hook."""

    #: The user id; None for an anonymous connection.
    user: str | None
    #: Shown to others in presence.
    info: JSON = None
    #: Unix time after which the connection must have refreshed its token; None: never.
    expires: float | None = None
    #: Channel patterns (globs) the connection may subscribe to where a rule says
    #: ``subscribe = "token"``; None: the credentials named none.
    channels: tuple[str, ...] | None = None
    #: Orbited keys the connection may be; None: any key of its own user.
    keys: tuple[ConnectionKey, ...] | None = None
    #: "open" (auth is off: nothing was checked), "token", "hook" or "anonymous".
    method: str = "open"

    @property
    def open(self) -> bool:
        """Nothing was checked: auth is off (development)."""
        return self.method == "open"

    def lists_channel(self, channel: str) -> bool:
        """The credentials grant ``channel`` (its ``channels`` claim matches it)."""
        return self.channels is not None and any(
            fnmatch.fnmatchcase(channel, pattern) for pattern in self.channels
        )

    def may_be_key(self, key: ConnectionKey) -> bool:
        """The connection may identify as Orbited ``key``."""
        if self.open:
            return True
        if self.keys is not None:
            return key in self.keys
        return self.user is not None and key.user == self.user


#: The identity of every connection while auth is off (nothing was checked).
OPEN = Identity(user=None)
