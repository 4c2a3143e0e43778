"""Live elements' call/reply messages, without I/O: the ops, their checks and encodings.

Live elements (Nevow Athena's model) let a browser widget and its Python
element call each other over a native-protocol connection
(``docs/protocol.md``, *Live elements*):

- ``{"id", "op": "attach", "mount", "resume"?}``: make the element of a mount
  for this connection (or resume the one a reconnecting page had); the reply's
  result is ``{"element": E, "widget": name, "resume": token, "resumed": bool}``.
- ``{"id", "op": "call", "element": E, "method", "args": [...]}``: call an
  exposed method; the reply is ``{"result": {"value": ...}}`` or an error.
- ``{"id", "op": "rpc", "method", "data"}``: call the app server through the
  RPC proxy (``[rpc] url``); the reply is ``{"result": {"value": ...}}``.
- ``{"push": "call", "call": N, "element": E, "method", "args"}``: the server
  calls the widget; the browser answers ``{"op": "return", "call": N,
  "value": ...}`` or ``{"op": "return", "call": N, "error": {"type",
  "message"}}``, a message with no ``id`` that gets no reply.

:func:`parse_attach`, :func:`parse_call` and :func:`parse_return` check a
decoded message's fields and raise :class:`BadLiveMessage` naming the
problem; the ``encode_*`` functions build what is sent and raise
:class:`NotJSON` for a value JSON cannot carry. :class:`CallIds` numbers a
connection's server-to-browser calls and bounds how many are outstanding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from orbiter.model import JSON

#: The longest mount path or method name a message may carry.
MAX_NAME = 128
#: The largest call or element id (JavaScript's safe integers).
MAX_ID = 2**53 - 1
#: The most characters of an error's ``type`` and ``message`` a ``return`` keeps.
MAX_ERROR_TYPE = 128
MAX_ERROR_MESSAGE = 4096


class BadLiveMessage(ValueError):
    """A live-element message is malformed; the message names the field."""


class NotJSON(TypeError):
    """A value to send cannot be JSON (a set, an object, a NaN...); says which."""


@dataclass(frozen=True, slots=True)
class Attach:
    """Make the element mounted at ``mount`` for this connection."""

    id: int
    mount: str
    #: The token of an element this page had before it reconnected.
    resume: str | None = None


@dataclass(frozen=True, slots=True)
class Call:
    """A browser's call of ``method`` on its element ``element``."""

    id: int
    element: int
    method: str
    args: tuple[JSON, ...]


@dataclass(frozen=True, slots=True)
class Rpc:
    """A browser's call of ``method`` on the app server, through the RPC proxy."""

    id: int
    method: str
    data: JSON


@dataclass(frozen=True, slots=True)
class Return:
    """A browser's answer to the server's call ``call``: a value, or an error."""

    call: int
    value: JSON = None
    #: ``(type, message)`` when the widget's method threw.
    error: tuple[str, str] | None = None


def parse_attach(id_: int, obj: dict[str, Any]) -> Attach:
    mount = obj.get("mount")
    if not isinstance(mount, str) or not mount.startswith("/") or len(mount) > MAX_NAME:
        raise BadLiveMessage(
            f"'attach' needs 'mount', a path starting with '/' of at most {MAX_NAME} characters"
        )
    resume = obj.get("resume")
    if resume is not None and (not isinstance(resume, str) or not 0 < len(resume) <= MAX_NAME):
        raise BadLiveMessage(f"'attach' 'resume' must be a token of 1 to {MAX_NAME} characters")
    return Attach(id_, mount, resume)


def parse_call(id_: int, obj: dict[str, Any]) -> Call:
    element = _positive(obj.get("element"), "element")
    method = obj.get("method")
    if not isinstance(method, str) or not method or len(method) > MAX_NAME:
        raise BadLiveMessage(
            f"'call' needs 'method', a non-empty string of at most {MAX_NAME} characters"
        )
    args = obj.get("args", [])
    if not isinstance(args, list):
        raise BadLiveMessage("'call' 'args' must be an array")
    return Call(id_, element, method, tuple(args))


def parse_rpc(id_: int, obj: dict[str, Any]) -> Rpc:
    method = obj.get("method")
    if not isinstance(method, str) or not method or len(method) > MAX_NAME:
        raise BadLiveMessage(
            f"'rpc' needs 'method', a non-empty string of at most {MAX_NAME} characters"
        )
    return Rpc(id_, method, obj.get("data"))


def parse_return(obj: dict[str, Any]) -> Return:
    call = _positive(obj.get("call"), "call")
    error = obj.get("error")
    if error is None:
        return Return(call, obj.get("value"))
    if not isinstance(error, dict):
        raise BadLiveMessage("'return' 'error' must be an object {type, message}")
    kind, message = error.get("type", "Error"), error.get("message", "")
    if not isinstance(kind, str) or not isinstance(message, str):
        raise BadLiveMessage("'return' 'error.type' and 'error.message' must be strings")
    return Return(call, error=(kind[:MAX_ERROR_TYPE] or "Error", message[:MAX_ERROR_MESSAGE]))


def _positive(value: object, name: str) -> int:
    if type(value) is not int or not 0 < value <= MAX_ID:
        raise BadLiveMessage(f"'{name}' must be a positive integer")
    return value


# --------------------------------------------------------------------------- encoding


def _dumps(obj: dict[str, Any], what: str) -> bytes:
    try:
        return orjson.dumps(obj)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        raise NotJSON(f"{what} cannot be sent as JSON: {exc}") from None


def encode_call_push(call: int, element: int, method: str, args: tuple[Any, ...]) -> bytes:
    """The push of a server-to-browser call; :class:`NotJSON` names a bad argument."""
    push = {"push": "call", "call": call, "element": element, "method": method, "args": args}
    return _dumps(push, f"the arguments of {method}()")


def encode_call_result(id_: int, method: str, value: Any) -> bytes:
    """The reply to a browser's call; :class:`NotJSON` if ``value`` cannot be sent."""
    return _dumps({"id": id_, "result": {"value": value}}, f"the result of {method}()")


def encode_call_error(
    id_: int, code: int, kind: str, message: str, traceback: str | None = None
) -> bytes:
    """An error reply to a browser's call, naming the exception ``kind``."""
    error: dict[str, Any] = {"code": code, "message": message, "type": kind}
    if traceback is not None:
        error["traceback"] = traceback
    return orjson.dumps({"id": id_, "error": error})


class TooManyCalls(Exception):
    """A connection has as many server-to-browser calls outstanding as it may."""


class CallIds:
    """Numbers one connection's server-to-browser calls and counts those unanswered.

    ``start`` gives the next id (or :class:`TooManyCalls` at ``limit``
    outstanding); ``finish`` ends one and says whether it was outstanding
    (a late or unknown answer is not).
    """

    __slots__ = ("_limit", "_next", "_open")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._next = 1
        self._open: set[int] = set()

    @property
    def outstanding(self) -> int:
        return len(self._open)

    def start(self) -> int:
        if len(self._open) >= self._limit:
            raise TooManyCalls(
                f"{self._limit} calls to the browser are unanswered (live.max_calls)"
            )
        call, self._next = self._next, self._next + 1
        self._open.add(call)
        return call

    def finish(self, call: int) -> bool:
        if call in self._open:
            self._open.discard(call)
            return True
        return False
