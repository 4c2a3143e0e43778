"""pyorbited's ``Orbit 1.0`` event protocol (Orbited 0.3's orbit port), without I/O.

What ``pyorbited.simple.Client.event(recipients, body)`` writes, each line
ending in CRLF::

    Orbit 1.0
    Event
    id: 7
    recipient: alice, 0, /chat        (one line per recipient)
    length: 14
                                      (an empty line)
    "<b>hi</b>"                       (exactly ``length`` bytes, no CRLF)

The body is JSON (``json=True``, the default) or, with ``json=False``,
any text. The daemon answers each request with ``Success\\r\\nid: 7\\r\\n\\r\\n``
or ``Failure\\r\\nid: 7\\r\\nmsg: ...\\r\\nrecipient: (alice, 0, /chat)\\r\\n\\r\\n``
naming the recipients it could not reach. Requests may be pipelined.

:class:`OrbitParser` turns received bytes into :class:`EventRequest`
objects (or :class:`OrbitProtocolError` naming the problem, after which the
connection cannot be trusted to be in step and is closed);
:func:`success` and :func:`failure` make the answers. The parser holds at
most one request: its whole size (lines with their CRLFs, and the body) is
bounded by ``max_request``, its body by ``max_body`` (the errors name the
``[pyorbited]`` keys they come from). Lines with control characters are
refused, so nothing read can split an answer that echoes it (the ``id``,
the recipients).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: The longest request line (version, type or header) accepted.
MAX_LINE = 8192
#: Recipients one request may name.
MAX_RECIPIENTS = 10_000
#: C0 controls (CR and LF among them), DEL and C1 controls: never in a line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: Headers a control character is reported by name for.
_KNOWN_HEADERS = ("id", "recipient", "length")


class OrbitProtocolError(ValueError):
    """The peer broke the protocol; ``request_id`` is the id, when it was read."""

    def __init__(self, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


@dataclass(frozen=True, slots=True)
class EventRequest:
    version: str
    id: str
    recipients: tuple[str, ...]
    body: bytes


@dataclass(slots=True)
class _Pending:
    version: str | None = None
    type: str | None = None
    id: str | None = None
    recipients: list[str] = field(default_factory=list)
    length: int | None = None


class OrbitParser:
    """Bytes in, :class:`EventRequest` objects out; bounded in every dimension.

    ``max_request`` bounds a whole request (every line with its CRLF, and the
    body); ``max_body`` its ``length``. Both are refused as soon as they are
    known to be exceeded, before the bytes arrive.
    """

    def __init__(self, max_body: int, max_request: int) -> None:
        self.max_body = max_body
        self.max_request = max_request
        self._buffer = bytearray()
        self._pending = _Pending()
        self._in_body = False
        #: Bytes of the request being read, up to the end of its last complete line.
        self._size = 0

    @property
    def mid_request(self) -> bool:
        """Part of a request has arrived, and not all of it."""
        return bool(self._buffer) or self._pending.version is not None

    def feed(self, data: bytes) -> list[EventRequest]:
        """Take received bytes; the requests they complete. Raises OrbitProtocolError."""
        self._buffer += data
        requests: list[EventRequest] = []
        while True:
            if self._in_body:
                length = self._pending.length or 0
                if len(self._buffer) < length:
                    return requests
                body = bytes(self._buffer[:length])
                del self._buffer[:length]
                requests.append(self._finish(body))
                continue
            end = self._buffer.find(b"\r\n")
            if end < 0:
                if len(self._buffer) > MAX_LINE:
                    raise OrbitProtocolError(
                        f"a line is longer than {MAX_LINE} bytes", self._pending.id
                    )
                if self._size + len(self._buffer) > self.max_request:
                    raise self._too_large()
                return requests
            if end > MAX_LINE:
                raise OrbitProtocolError(
                    f"a line is longer than {MAX_LINE} bytes", self._pending.id
                )
            raw = bytes(self._buffer[:end])
            del self._buffer[: end + 2]
            self._size += end + 2
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise OrbitProtocolError("a line is not UTF-8", self._pending.id) from None
            self._line(line)
            if self._size + (self._pending.length or 0) > self.max_request:
                raise self._too_large()

    def _too_large(self) -> OrbitProtocolError:
        return OrbitProtocolError(
            f"the request is more than {self.max_request} bytes (pyorbited.max_request)",
            self._pending.id,
        )

    def _line(self, line: str) -> None:
        pending = self._pending
        control = _CONTROL.search(line)
        if control is not None:
            name = line.partition(":")[0].lower()
            where = f"the '{name}' header" if name in _KNOWN_HEADERS else "a line"
            raise OrbitProtocolError(
                f"{where} contains a control character ({ord(control.group()):#04x}); "
                "lines end with CRLF and may not contain CR, LF or other control characters",
                pending.id,  # only ever a checked id
            )
        if pending.version is None:
            if not line.startswith("Orbit"):
                raise OrbitProtocolError(f"expected a version line like 'Orbit 1.0', got {line!r}")
            pending.version = line
        elif pending.type is None:
            if line != "Event":
                raise OrbitProtocolError(f"unknown request type {line[:40]!r} (only 'Event')")
            pending.type = line
        elif line == "":
            if pending.id is None:
                raise OrbitProtocolError("the request has no 'id' header")
            if pending.length is None:
                raise OrbitProtocolError("the request has no 'length' header", pending.id)
            self._in_body = True
        else:
            name, sep, value = line.partition(": ")
            if not sep:
                raise OrbitProtocolError(f"a header must be 'name: value', got {line[:80]!r}")
            name = name.lower()
            if name == "id":
                pending.id = value
            elif name == "recipient":
                if len(pending.recipients) >= MAX_RECIPIENTS:
                    raise OrbitProtocolError(f"more than {MAX_RECIPIENTS} recipients", pending.id)
                pending.recipients.append(value)
            elif name == "length":
                if not (value.isascii() and value.isdigit()):
                    raise OrbitProtocolError(f"length {value[:20]!r} is not a number", pending.id)
                if len(value) > 18 or int(value) > self.max_body:  # (int() takes 4300 digits)
                    shown = value if len(value) <= 20 else value[:20] + "..."
                    raise OrbitProtocolError(
                        f"length {shown} is more than {self.max_body} bytes (pyorbited.max_body)",
                        pending.id,
                    )
                pending.length = int(value)
            # Other headers are carried by later Orbit versions; 1.0 has none.

    def _finish(self, body: bytes) -> EventRequest:
        pending = self._pending
        assert pending.version is not None
        assert pending.id is not None
        request = EventRequest(pending.version, pending.id, tuple(pending.recipients), body)
        self._pending = _Pending()
        self._in_body = False
        self._size = 0
        return request


def success(request_id: str) -> bytes:
    return f"Success\r\nid: {request_id}\r\n\r\n".encode()


def failure(request_id: str | None, message: str, recipients: tuple[str, ...] = ()) -> bytes:
    """The Failure answer; recipients are written ``(user, session, /location)`` as 0.3 did."""
    lines = ["Failure", f"id: {request_id or ''}", f"msg: {_one_line(message)}"]
    lines += [f"recipient: ({_one_line(r)})" for r in recipients]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _one_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")
