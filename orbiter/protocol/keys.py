"""Orbited connection keys: ``"user, session, /location"``.

Orbited 0.3 addressed each browser connection by a key of three parts: the
user id, a session id (one per logged-in browser of that user, usually
``0``) and a location (a chat room, say). App servers send with
``orbit.event(["alice, 0, /chat"], "<b>hi</b>")``.

In orbiter a key is nothing but a personal channel. This module parses the
spelling variants found in the seeds (``"alice, 0, /chat"``,
``"alice,0,/chat"``, ``"alice , 0 , chat"``) into one canonical form and
names the channel that carries the key's events. Pure code, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Prefix of channels that belong to Orbited keys. Channels starting with
#: ``$`` are bound by the server; clients cannot subscribe to them directly.
KEY_CHANNEL_PREFIX = "$key:"

_MAX_PART = 200


class InvalidKey(ValueError):
    """A connection key, or one of its parts, is malformed."""


@dataclass(frozen=True, slots=True)
class ConnectionKey:
    """One Orbited connection key, in canonical form."""

    user: str
    session: str
    location: str

    @classmethod
    def build(cls, user: str, session: str | int, location: str) -> ConnectionKey:
        """Validate and normalise the three parts of a key."""
        user = _check_part("user", user)
        session = _check_part("session", str(session))
        location = location.strip()
        if not location.startswith("/"):
            location = "/" + location
        location = _check_part("location", location, allow_comma=True)
        return cls(user, session, location)

    @classmethod
    def parse(cls, text: str) -> ConnectionKey:
        """Parse ``"user, session, /location"`` in any of the seeds' spacings."""
        if not isinstance(text, str):
            raise InvalidKey("a connection key must be a string")
        parts = text.split(",", 2)
        if len(parts) != 3:
            raise InvalidKey(
                f"connection key {text[:80]!r} must have three comma-separated parts: "
                "'user, session, /location'"
            )
        return cls.build(parts[0], parts[1], parts[2])

    def __str__(self) -> str:
        return f"{self.user}, {self.session}, {self.location}"

    @property
    def channel(self) -> str:
        """The channel that carries events sent to this key."""
        return KEY_CHANNEL_PREFIX + str(self)


def _check_part(name: str, value: str, *, allow_comma: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidKey(f"key part {name!r} must be a string")
    value = value.strip()
    if not value or value == "/":
        raise InvalidKey(f"key part {name!r} is empty")
    if len(value) > _MAX_PART:
        raise InvalidKey(f"key part {name!r} is longer than {_MAX_PART} characters")
    if not allow_comma and "," in value:
        raise InvalidKey(f"key part {name!r} must not contain a comma")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidKey(f"key part {name!r} contains a control character")
    return value
