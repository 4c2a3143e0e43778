"""The origin behind the Pushpin peer: WebSocket-over-HTTP (GRIP), subscribing by URL.

Pushpin (``peers/pushpin.conf``, routes ``* 127.0.0.1:ORIGIN,over_http``)
holds the client WebSockets itself and tells this origin what happens on
them as HTTP POSTs of ``application/websocket-events``. This origin answers
a connection's ``OPEN`` by accepting it and subscribing it to the channel
named by the URL's ``channel`` query parameter (``/ws?channel=C``): a GRIP
control message ``c:{"type":"subscribe","channel":"C"}``. A ``CLOSE`` is
answered with ``CLOSE``; other events get no events back. Publishing does
not come here: the bench posts to Pushpin's own control port
(``POST /publish/``, ``ws-message`` format). Run: ``python -m
orbiter.bench.peers.pushpin_origin PORT``.
"""

from __future__ import annotations

import json
import sys

from aiohttp import web

EVENTS = "application/websocket-events"


def parse_events(body: bytes) -> list[tuple[str, bytes]]:
    """``TYPE[ HEXSIZE]\\r\\n[CONTENT\\r\\n]`` events, in order; ValueError when malformed."""
    events = []
    pos = 0
    while pos < len(body):
        end = body.find(b"\r\n", pos)
        if end < 0:
            raise ValueError("an event line without CRLF")
        kind, _, size = body[pos:end].decode("ascii").partition(" ")
        pos = end + 2
        content = b""
        if size:
            n = int(size, 16)
            content = body[pos : pos + n]
            if len(content) != n or body[pos + n : pos + n + 2] != b"\r\n":
                raise ValueError(f"a {kind} event shorter than its size {n}")
            pos += n + 2
        events.append((kind, content))
    return events


def encode_event(kind: str, content: bytes | None = None) -> bytes:
    if content is None:
        return kind.encode() + b"\r\n"
    return b"%s %x\r\n%s\r\n" % (kind.encode(), len(content), content)


async def websocket_events(request: web.Request) -> web.Response:
    if request.content_type != EVENTS:
        return web.Response(status=400, text=f"expected Content-Type {EVENTS}\n")
    try:
        events = parse_events(await request.read())
    except ValueError as exc:
        return web.Response(status=400, text=f"bad websocket-events body: {exc}\n")
    out = []
    for kind, _content in events:
        if kind == "OPEN":
            channel = request.query.get("channel", "")
            control = json.dumps({"type": "subscribe", "channel": channel}).encode()
            out.append(encode_event("OPEN"))
            out.append(encode_event("TEXT", b"c:" + control))
        elif kind == "CLOSE":
            out.append(encode_event("CLOSE", b"\x03\xe8"))
    return web.Response(
        body=b"".join(out),
        headers={"Content-Type": EVENTS, "Sec-WebSocket-Extensions": "grip"},
    )


def build_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/{tail:.*}", websocket_events)
    return app


if __name__ == "__main__":
    import uvloop

    uvloop.install()
    web.run_app(build_app(), host="127.0.0.1", port=int(sys.argv[1]), access_log=None)
