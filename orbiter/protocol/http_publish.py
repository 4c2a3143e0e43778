"""A strict parser for pipelined ``POST /api/publish`` HTTP/1.1 requests, and nothing else.

The HTTP publish fast path (:mod:`orbiter.http.fast_publish`) serves
keep-alive connections of publish requests without aiohttp. This module
decides, request by request, whether a request is one the fast path fully
understands; :func:`parse_publish` returns the request and where the next
one starts, :data:`INCOMPLETE` when more bytes are needed, or
:class:`Handover` when the request (from its first byte) must go to
aiohttp, which then answers it exactly as it answers any request.

It accepts only a subset of what aiohttp accepts, so a request it takes
would have meant the same to aiohttp:

- the request line is exactly ``POST /api/publish HTTP/1.1``;
- every line ends in CRLF; no bare CR or LF, no obs-fold, no control
  character or non-ASCII byte anywhere in the head; each header is a token,
  a colon and a value of visible ASCII with optional spaces or tabs around;
- one ``Content-Length`` of ASCII digits, at most the body limit; the body
  is exactly that many bytes;
- one ``Host``; no ``Transfer-Encoding``, ``Content-Encoding``, ``Expect``,
  ``Upgrade`` or ``Sec-WebSocket-Key1``; ``Connection`` only ``close``
  and/or ``keep-alive``; no header repeated that aiohttp refuses repeated
  (``Host``, ``Content-Type``, ``User-Agent``...) or that the API reads
  (``Connection``, ``X-API-Key``, ``Authorization``);
- the head, through its blank line, is at most :data:`MAX_HEAD` bytes and
  :data:`MAX_HEADERS` header lines;
- the server admits it (its ``admit`` check, given the :class:`PublishHead`:
  the fast path's ``Host`` and ``Content-Type`` rules), judged once per
  distinct head.

Anything else is a :class:`Handover`. The request boundary is the head's
blank line plus ``Content-Length``, the one framing every HTTP/1.1 parser
agrees on when there is no ``Transfer-Encoding``, so the fast path and
aiohttp can never disagree about where a request ends (no smuggling).

Why not ``httptools`` (llhttp): it reports neither where a request began
nor where its head ended, and a handover must start exactly there; and
llhttp accepts more than the list above (obs-fold, duplicate headers),
which would be re-checked in Python anyway. The strict subset is what
keeps the handover rule simple; :class:`PublishParser` remembers the few
heads a client repeats (the timings are in ``docs/benchmarks.md``, "Parts
chosen by measurement").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

#: The longest head (request line, headers, blank line) taken; longer ones go to aiohttp.
MAX_HEAD: Final = 8192
#: The only request line taken.
REQUEST_LINE: Final = b"POST /api/publish HTTP/1.1\r\n"
#: One header line of the strict subset (with its CRLF): the line, its name, and its
#: value with any spaces after it.
_LINE = re.compile(rb"(([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*((?:[\x21-\x7e][\x20-\x7e\t]*)?)\r\n)")
_OWS = b" \t"
(_CONTENT_LENGTH, _X_API_KEY, _AUTHORIZATION, _CONNECTION, _FORWARDED_FOR, _SINGLETON) = range(6)
_REFUSED = 6
#: The headers that matter here (lower case). _REFUSED ones mean the request is not
#: taken: a body framing or encoding aiohttp would apply (Transfer-Encoding,
#: Content-Encoding), Expect, Upgrade, and the hixie-76 key aiohttp refuses.
#: _SINGLETON ones aiohttp refuses when repeated (and a request without Host).
_NAMES: Final = {
    b"content-length": _CONTENT_LENGTH,
    b"x-api-key": _X_API_KEY,
    b"authorization": _AUTHORIZATION,
    b"connection": _CONNECTION,
    b"x-forwarded-for": _FORWARDED_FOR,
    b"host": _SINGLETON,
    b"content-type": _SINGLETON,
    b"content-location": _SINGLETON,
    b"content-range": _SINGLETON,
    b"etag": _SINGLETON,
    b"max-forwards": _SINGLETON,
    b"server": _SINGLETON,
    b"user-agent": _SINGLETON,
    b"transfer-encoding": _REFUSED,
    b"content-encoding": _REFUSED,
    b"expect": _REFUSED,
    b"upgrade": _REFUSED,
    b"sec-websocket-key1": _REFUSED,
}
#: More header lines than this go to aiohttp (which refuses more than 128).
MAX_HEADERS: Final = 64
_MAX_DIGITS: Final = 18


class Handover:
    """The request at this position is not the fast path's; ``reason`` says why (for tests/logs)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Handover({self.reason!r})"


class PublishHead:
    """What the head of a request the fast path takes says."""

    __slots__ = (
        "authorization",
        "close",
        "content_type",
        "forwarded_for",
        "host",
        "length",
        "x_api_key",
    )

    def __init__(
        self,
        length: int,
        x_api_key: str | None,
        authorization: str | None,
        forwarded_for: tuple[str, ...],
        close: bool,
        host: str = "",
        content_type: str | None = None,
    ) -> None:
        #: The body's length (``Content-Length``).
        self.length = length
        #: The ``X-API-Key`` and ``Authorization`` values, if sent (spaces around removed).
        self.x_api_key = x_api_key
        self.authorization = authorization
        #: Every ``X-Forwarded-For`` value, in order (only logs use it).
        self.forwarded_for = forwarded_for
        #: The client sent ``Connection: close``: answer, then close.
        self.close = close
        #: The ``Host`` and ``Content-Type`` values (spaces around removed), if sent.
        self.host = host
        self.content_type = content_type


#: More bytes are needed before the request at this position can be judged.
INCOMPLETE: Final = None

#: A request taken: its head, its body, and where the next request starts.
Parsed = tuple[PublishHead, bytes, int] | Handover | None
#: Distinct heads a :class:`PublishParser` remembers.
MEMO_SIZE: Final = 32
#: Whether the server answers a request with this head here (else aiohttp does).
Admit = Callable[[PublishHead], bool]


def admit_all(head: PublishHead) -> bool:
    """The ``admit`` check that admits every head."""
    return True


class PublishParser:
    """Judges a connection's requests in turn, remembering the heads it judged.

    A client sends the same few heads again and again (only
    ``Content-Length`` changes, if anything), so a head seen before, byte for
    byte, is not parsed again.
    """

    __slots__ = ("_admit", "_heads", "_last", "_max_body", "wanted")

    def __init__(self, max_body: int, admit: Admit = admit_all) -> None:
        #: The largest body taken; a longer one is handed over (aiohttp answers it 413).
        self._max_body = max_body
        #: The server's own rules for a head (checked once per distinct head).
        self._admit = admit
        self._heads: dict[bytes, PublishHead | Handover] = {}
        #: The last head taken, byte for byte, and what it says. It holds no blank line
        #: but its last, so a request that starts with it has that head: one compare.
        self._last: tuple[bytes, PublishHead] | None = None
        #: After :data:`INCOMPLETE`: the bytes from ``start`` needed before judging again
        #: is worth it (the whole request, once its head is known; else 0, any more).
        self.wanted = 0

    def parse(self, data: bytes, start: int) -> Parsed:
        """Judge the request starting at ``data[start]``.

        Returns ``(head, body, end)`` (the next request starts at ``data[end]``),
        :data:`INCOMPLETE`, or a :class:`Handover`.
        """
        last = self._last
        if last is not None and data.startswith(last[0], start):
            head = last[1]
            head_end = start + len(last[0])
        else:
            found = self._find_head(data, start)
            if found is None or isinstance(found, Handover):
                return found
            head, head_end = found
        end = head_end + head.length
        if len(data) < end:
            self.wanted = end - start
            return INCOMPLETE
        return head, data[head_end:end], end

    def _find_head(self, data: bytes, start: int) -> tuple[PublishHead, int] | Handover | None:
        """The head starting at ``data[start]`` and where it ends, judged (or remembered)."""
        blank = data.find(b"\r\n\r\n", start)
        if blank < 0:
            available = data[start : start + len(REQUEST_LINE)]
            if not REQUEST_LINE.startswith(available):
                return Handover("not POST /api/publish HTTP/1.1")
            if len(data) - start >= MAX_HEAD:
                return Handover("head too long")
            self.wanted = 0
            return INCOMPLETE
        head_end = blank + 4
        if head_end - start > MAX_HEAD:
            return Handover("head too long")
        raw = data[start:head_end]
        head = self._heads.get(raw)
        if head is None:
            head = judge_head(raw, self._max_body)
            if not isinstance(head, Handover) and not self._admit(head):
                head = Handover("not admitted (Host or Content-Type)")
            if len(self._heads) >= MEMO_SIZE:
                self._heads.clear()
            self._heads[raw] = head
        if isinstance(head, Handover):
            return head
        self._last = (raw, head)
        return head, head_end


def parse_publish(data: bytes, start: int, max_body: int) -> Parsed:
    """:meth:`PublishParser.parse` with nothing remembered."""
    return PublishParser(max_body).parse(data, start)


def judge_head(head: bytes, max_body: int) -> PublishHead | Handover:
    """Judge a whole head (request line through the blank line, at most MAX_HEAD bytes)."""
    if not head.startswith(REQUEST_LINE):
        return Handover("not POST /api/publish HTTP/1.1")
    fields = head[len(REQUEST_LINE) : -2]
    length: int | None = None
    x_api_key: str | None = None
    authorization: str | None = None
    forwarded_for: list[str] = []
    close = False
    host = ""
    content_type: str | None = None
    seen_connection = False
    covered = 0
    lines = _LINE.findall(fields)
    if len(lines) > MAX_HEADERS:
        return Handover("too many headers")
    singletons: list[bytes] = []
    for line, name, raw in lines:
        covered += len(line)
        kind = _NAMES.get(name.lower())
        if kind is None:
            continue
        if kind == _SINGLETON:
            lower = name.lower()
            if lower in singletons:
                return Handover(f"repeated {name.decode()}")
            singletons.append(lower)
            if lower == b"host":
                host = raw.rstrip(_OWS).decode("ascii")
            elif lower == b"content-type":
                content_type = raw.rstrip(_OWS).decode("ascii")
            continue
        value = raw.rstrip(_OWS)
        if kind == _CONTENT_LENGTH:
            if length is not None:
                return Handover("repeated Content-Length")
            if not value.isdigit() or len(value) > _MAX_DIGITS:
                return Handover("Content-Length is not plain digits")
            length = int(value)
        elif kind == _X_API_KEY:
            if x_api_key is not None:
                return Handover("repeated X-API-Key")
            x_api_key = value.decode("ascii")
        elif kind == _AUTHORIZATION:
            if authorization is not None:
                return Handover("repeated Authorization")
            authorization = value.decode("ascii")
        elif kind == _CONNECTION:
            if seen_connection:
                return Handover("repeated Connection")
            seen_connection = True
            for token in value.lower().split(b","):
                token = token.strip(_OWS)
                if token == b"close":
                    close = True
                elif token != b"keep-alive":
                    return Handover("Connection other than close or keep-alive")
        elif kind == _FORWARDED_FOR:
            forwarded_for.append(value.decode("ascii"))
        else:
            return Handover(f"{name.decode()} header")
    if covered != len(fields):
        # The lines matched do not tile the head: some line is outside the subset.
        return Handover("a header line outside the strict subset")
    if length is None:
        return Handover("no Content-Length")
    if b"host" not in singletons:
        return Handover("no Host")
    if length > max_body:
        return Handover("body over the limit")
    return PublishHead(
        length, x_api_key, authorization, tuple(forwarded_for), close, host, content_type
    )
