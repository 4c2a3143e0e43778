"""The ``/tcp`` WebSocket's wire format: which target a request names, and how bytes are framed.

A request names its target in the path (``/tcp/host:port``, as a
websockify client such as noVNC is given a path) or the query
(``?target=host:port``, ``?token=host:port``, or ``?host=...&port=...``).

Three framings, chosen by the WebSocket subprotocol the client offers:

- none, or ``binary`` (websockify, as today's noVNC connects): bytes travel
  in binary frames both ways, nothing else;
- ``base64`` (websockify's older mode): text frames holding base64 both ways;
- ``orbiter.tcp`` (orbiter.js ``TCPSocket``): binary frames both ways, and
  once the backend is connected the server first sends one text frame,
  :func:`open_message` (``{"type": "open", "target": ...}``), so the page
  knows the backend answered.

Pure code, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Mapping

import orjson

from orbiter.protocol.tcp_access import BadTarget, Target


class Framing(enum.Enum):
    NATIVE = "native"
    BINARY = "binary"
    BASE64 = "base64"

    @classmethod
    def for_subprotocol(cls, protocol: str | None) -> Framing:
        if protocol == NATIVE_SUBPROTOCOL:
            return cls.NATIVE
        if protocol == "base64":
            return cls.BASE64
        return cls.BINARY


#: orbiter's own framing (the open message first).
NATIVE_SUBPROTOCOL = "orbiter.tcp"
#: The subprotocols the server accepts, in its order of preference.
SUBPROTOCOLS = (NATIVE_SUBPROTOCOL, "binary", "base64")


class BadFrame(ValueError):
    """A frame from the browser is not valid in the connection's framing."""


def target_from(
    path_tail: str, query: Mapping[str, str], *, token_is_target: bool = True
) -> Target:
    """The target a ``/tcp`` request names, or :class:`BadTarget` saying what is wrong.

    ``?token=`` names the target (websockify's token plugins) unless
    ``token_is_target`` is False: where the server requires auth, it is the
    connection token instead.
    """
    path_tail = path_tail.strip("/")
    candidates = [path_tail] if path_tail else []
    names = ("target", "token") if token_is_target else ("target",)
    candidates += [query[name] for name in names if name in query]
    if "host" in query or "port" in query:
        if "host" not in query or "port" not in query:
            raise BadTarget("give both 'host' and 'port'")
        return Target.build(query["host"], query["port"])
    if not candidates:
        raise BadTarget("no target: use /tcp/host:port or ?target=host:port")
    if len(set(candidates)) > 1:
        raise BadTarget("the request names more than one target")
    return Target.parse(candidates[0])


#: A page's session id: what orbiter.js sends (``?session=``), bounded and plain.
_SESSION = re.compile(r"[A-Za-z0-9_-]{1,64}")


def session_from(value: str | None) -> str | None:
    """A valid page session id, None when absent; :class:`BadTarget` when malformed."""
    if value is None:
        return None
    if not _SESSION.fullmatch(value):
        raise BadTarget("'session' must be 1-64 letters, digits, '-' or '_'")
    return value


def open_message(target: Target) -> str:
    """The text frame that tells a native client its backend is connected."""
    return orjson.dumps({"type": "open", "target": str(target)}).decode()


def encode_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_base64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise BadFrame("a base64 connection got a text frame that is not base64") from None
