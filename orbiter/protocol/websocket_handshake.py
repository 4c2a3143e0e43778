"""The RFC 6455 opening handshake, without I/O: read a request head, check it, answer ``101``.

orbiter answers native WebSocket handshakes itself, before aiohttp parses
them (``transports/websocket.py``). :func:`parse_head` reads a request head
into a :class:`HandshakeHead`, which carries what ``transports/request_checks.py``'s
checks read of a request (method, path, scheme, peer, headers, query), so
the origin, proxy and credential rules are applied from that one place.

:func:`refusal` applies aiohttp 3.14's handshake checks, in its order
(``Upgrade: websocket``, a ``Connection: upgrade`` token, version 13, 8 or 7,
a key of 16 bytes), and also refuses what orbiter does not take here (not
HTTP/1.1, a request body). A refused head is not answered here: it goes to
aiohttp, which answers it as it always has (``400`` naming the problem).
:func:`switching_protocols` is the ``101`` answer to an accepted one.

Bytes that cannot be what a header says are answered here, since aiohttp
fails on them (a non-ASCII byte in ``Sec-WebSocket-Key`` is a ``500`` there):
:func:`undecodable` names a header of the handshake (those of
:data:`ASCII_HEADERS`, whose grammars are ASCII) holding a byte that is not
ASCII, and :func:`bad_request` is the ``400`` answer naming it. A request
target with such a byte is not parsed (aiohttp answers it ``400``).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

import orjson
from multidict import CIMultiDict, MultiDict, MultiMapping

#: The GUID of RFC 6455 section 1.3.
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: The request line: method, origin-form target (visible ASCII), version.
_REQUEST_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+) (/[\x21-\x7e]*) HTTP/(1\.[01])")
#: A header line (no obs-fold; no control characters but tab in the value).
_HEADER = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*?)[ \t]*")
#: WebSocket versions aiohttp accepts (13 is RFC 6455; 8 and 7 are its last drafts).
_VERSIONS = ("13", "8", "7")
#: Headers the handshake reads whose values are ASCII by their grammar (base64,
#: tokens, a host, a serialized origin, a bearer token, addresses).
ASCII_HEADERS = (
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
    "Upgrade",
    "Connection",
    "Host",
    "Origin",
    "Authorization",
    "X-Forwarded-For",
)


@dataclass(frozen=True, slots=True)
class HandshakeHead:
    """A parsed request head, as the checks in ``transports/request_checks.py`` read a request."""

    method: str
    #: The decoded path of the target; :attr:`query` is its query string, parsed.
    path: str
    query: MultiDict[str]
    version: str
    headers: CIMultiDict[str]
    #: The peer's address (the forwarded client's, once the trusted-proxy rule applied).
    remote: str | None
    #: orbiter serves plain HTTP; TLS is a proxy's job.
    scheme: str = "http"


def parse_head(head: bytes, remote: str | None) -> HandshakeHead | None:
    """Parse a request head (through its blank line); None if it is not well-formed."""
    lines = head.split(b"\r\n")
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        return None
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        if not line:
            continue
        header = _HEADER.fullmatch(line)
        if header is None:
            return None
        # As aiohttp decodes them.
        headers.add(
            header.group(1).decode("ascii"), header.group(2).decode("utf-8", "surrogateescape")
        )
    target = match.group(2).decode("ascii")
    raw_path, _, query_string = target.partition("?")
    return HandshakeHead(
        method=match.group(1).decode("ascii"),
        path=unquote(raw_path),
        query=MultiDict(parse_qsl(query_string, keep_blank_values=True)),
        version=match.group(3).decode("ascii"),
        headers=headers,
        remote=remote,
    )


def refusal(head: HandshakeHead) -> str | None:
    """None if ``head`` is a WebSocket handshake to accept, else what is wrong with it."""
    if head.method != "GET":
        return f"{head.method} is not GET"
    if head.version != "1.1":
        return f"HTTP/{head.version} is not HTTP/1.1"
    headers = head.headers
    if headers.get("Upgrade", "").lower().strip() != "websocket":
        return "no 'Upgrade: websocket' header"
    tokens = {
        t.strip().lower() for value in headers.getall("Connection", ()) for t in value.split(",")
    }
    if "upgrade" not in tokens:
        return "no 'Connection: upgrade' header"
    if headers.get("Sec-WebSocket-Version", "") not in _VERSIONS:
        return "unsupported Sec-WebSocket-Version"
    key = headers.get("Sec-WebSocket-Key")
    try:
        if not key or len(base64.b64decode(key)) != 16:
            return "bad Sec-WebSocket-Key"
    except ValueError:  # binascii.Error, or a character that is not ASCII
        return "bad Sec-WebSocket-Key"
    if "Transfer-Encoding" in headers or headers.get("Content-Length", "0") != "0":
        return "a request body"
    return None


def undecodable(headers: MultiMapping[str]) -> str | None:
    """None, or the ``400`` answer's message: a header of :data:`ASCII_HEADERS` not all ASCII.

    ``headers`` as :func:`parse_head` and aiohttp decode them (UTF-8, bytes that
    are not escaped as surrogates).
    """
    if "".join(headers.values()).isascii():  # as almost every head is (one check in C)
        return None
    for name in ASCII_HEADERS:
        for value in headers.getall(name, ()):
            if not value.isascii():
                return f"the {name} header holds a byte that is not ASCII"
    return None


def bad_request(message: str) -> bytes:
    """A whole ``400`` answer with orbiter's JSON error body; the connection is closed after it."""
    body = orjson.dumps({"error": {"status": 400, "message": message}})
    return (
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    ) + body


def accept_value(key: str) -> str:
    """``Sec-WebSocket-Accept`` for the client's ``Sec-WebSocket-Key`` (RFC 6455 section 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


def switching_protocols(head: HandshakeHead, extra: Mapping[str, str]) -> bytes:
    """The ``101`` answer to an accepted ``head`` (no subprotocol, no extension), with ``extra``."""
    key = head.headers["Sec-WebSocket-Key"]
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: upgrade",
        f"Sec-WebSocket-Accept: {accept_value(key)}",
    ]
    lines += [f"{name}: {value}" for name, value in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


def preferred_subprotocol(offered: list[str], supported: tuple[str, ...]) -> str | None:
    """The first of ``supported`` (the server's order of preference) that the client offers.

    ``offered`` holds the ``Sec-WebSocket-Protocol`` header values as sent
    (comma-separated tokens, any number of headers). aiohttp takes the
    first the *client* lists that it supports, so a client offering
    ``v10.stomp, v11.stomp, v12.stomp`` (stomp.js's order) got STOMP 1.0.
    """
    tokens = {token.strip() for value in offered for token in value.split(",")}
    return next((name for name in supported if name in tokens), None)
