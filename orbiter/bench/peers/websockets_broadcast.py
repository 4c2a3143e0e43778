"""The ``websockets`` peer: its ``broadcast()`` (one framing, written to every connection).

``/ws?channel=C`` subscribes; a WebSocket on ``/pub`` sending
``C<TAB>payload`` frames (each answered ``ok``) publishes. It serves no
HTTP POST, so the HTTP-route scenarios skip it. Needs ``pip install
websockets`` (a bench-only dependency). Run: ``python -m
orbiter.bench.peers.websockets_broadcast PORT``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit


async def main(port: int) -> None:
    from websockets.asyncio.server import broadcast, serve

    channels: dict[str, set[Any]] = {}

    async def handler(ws: Any) -> None:
        url = urlsplit(ws.request.path)
        if url.path == "/pub":
            async for msg in ws:
                channel, _, payload = str(msg).partition("\t")
                broadcast(channels.get(channel, ()), payload)
                await ws.send("ok")
            return
        channel = parse_qs(url.query).get("channel", [""])[0]
        subs = channels.setdefault(channel, set())
        subs.add(ws)
        try:
            await ws.wait_closed()
        finally:
            subs.discard(ws)

    async with serve(handler, "127.0.0.1", port, compression=None, max_queue=None):
        await asyncio.Future()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(int(sys.argv[1])))
