"""SockJS over the hixie-76 WebSocket draft: ``/<server>/<session>/websocket`` on asyncio streams.

aiohttp refuses hixie-76 handshakes, so :mod:`orbiter.transports.sniffing` hands
such connections here before aiohttp sees them. Framing inside is SockJS's,
as on RFC 6455 WebSockets (:mod:`orbiter.transports.sockjs.websocket`):
each text frame carries one SockJS frame going out and a JSON array of
messages coming in. The session lives exactly as long as the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from multidict import CIMultiDict, CIMultiDictProxy

from orbiter.protocol import hixie76
from orbiter.protocol.sockjs.frames import (
    MESSAGE_TOO_BIG,
    Frame,
    PayloadError,
    decode_websocket,
    encode_frame,
    largest_message_size,
)
from orbiter.protocol.websocket_handshake import parse_head as parse_http_head
from orbiter.transports.request_checks import is_guarded, origin_refusal
from orbiter.transports.sniffing import Claim, RawHandler, RawRouter, stream_claim
from orbiter.transports.sockjs.endpoint import Endpoint, LiveSession

if TYPE_CHECKING:
    from orbiter.node import Node
    from orbiter.transports.sockjs.handlers import SockJSHandler

log = logging.getLogger("orbiter.sockjs")

#: Seconds the client has to send key3 after the ``101`` head.
KEY3_TIMEOUT = 10.0
_READ_SIZE = 65_536


def hixie76_router(handler: SockJSHandler, node: Node) -> RawRouter:
    """Claims hixie-76 handshakes on ``handler``'s session WebSocket URLs.

    Others (another path, a service without WebSocket) are left to aiohttp,
    which refuses them. A claimed handshake that is incomplete, or comes
    from a page whose origin may not connect, is answered 400 or 403 with
    the reason; the origin check is :mod:`orbiter.transports.request_checks`'s, as on
    every other transport (the protocol suite's test services skip it).
    """

    def route(head: bytes, peer: str) -> Claim | None:
        if not hixie76.is_hixie76(head):
            return None
        try:
            request = hixie76.parse_head(head)
        except hixie76.HandshakeError:
            return None
        head_fields = parse_http_head(head, peer)  # as the origin checks read a request
        if head_fields is None:
            return None
        endpoint = handler.websocket_endpoint(request.target.partition("?")[0])
        if endpoint is None:
            return None
        try:
            hixie76.validate(request)
        except hixie76.HandshakeError as exc:
            return stream_claim(_refuse(400, str(exc)))
        if is_guarded(head_fields.path, node):
            refusal = origin_refusal(head_fields, node)
            if refusal is not None:
                return stream_claim(_refuse(403, refusal))

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await serve_hixie76(reader, writer, request, endpoint, peer=peer)

        return stream_claim(serve)

    return route


def _refuse(status: int, reason: str) -> RawHandler:
    """A handler that answers ``status`` with ``reason`` and closes."""
    body = (reason + "\n").encode()
    head = (
        f"HTTP/1.1 {status} {'Bad Request' if status == 400 else 'Forbidden'}\r\n"
        "Content-Type: text/plain; charset=UTF-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(head + body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()

    return answer


class _Hixie76Receiver:
    """Writes each SockJS frame as one hixie-76 text frame."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    def alive(self) -> bool:
        return not self._writer.is_closing()

    async def write(self, frame: Frame) -> bool:
        self._writer.write(hixie76.encode_text(encode_frame(frame)))
        await self._writer.drain()
        return True


async def serve_hixie76(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    request: hixie76.RequestHead,
    endpoint: Endpoint,
    *,
    peer: str,
    secure: bool = False,
) -> None:
    """Answer the (validated) handshake, then run a SockJS session until either side ends."""
    try:
        writer.write(hixie76.response_head(request, secure=secure))
        key3 = await asyncio.wait_for(reader.readexactly(8), KEY3_TIMEOUT)
        headers = request.headers
        writer.write(
            hixie76.challenge_response(
                headers["sec-websocket-key1"], headers["sec-websocket-key2"], key3
            )
        )
        await writer.drain()
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        log.info("hixie-76 websocket from %s: no key3, closing", peer)
        writer.close()
        return
    live = endpoint.connect(peer)
    live.request_headers = CIMultiDictProxy(CIMultiDict(headers))
    pump = asyncio.create_task(_write(writer, live))
    try:
        await _read(reader, live, endpoint, peer)
    finally:
        if live.session.is_open:
            live.end()
        await pump


async def _read(
    reader: asyncio.StreamReader, live: LiveSession, endpoint: Endpoint, peer: str
) -> None:
    options = endpoint.options
    decoder = hixie76.FrameDecoder(options.max_body)
    while True:
        try:
            data = await reader.read(_READ_SIZE)
        except ConnectionError:
            return
        if not data:
            return
        try:
            events = decoder.feed(data)
        except hixie76.FrameError as exc:
            log.info("hixie-76 websocket from %s: %s, closing", peer, exc)
            return
        for event in events:
            if isinstance(event, hixie76.CloseRequest):
                return
            try:
                messages = decode_websocket(event.text)
            except PayloadError:
                log.info("hixie-76 websocket from %s: broken JSON, closing", peer)
                return
            if largest_message_size(messages) > options.max_message_size:
                live.close(MESSAGE_TOO_BIG.code, MESSAGE_TOO_BIG.reason)
                return
            await live.deliver(messages)


async def _write(writer: asyncio.StreamWriter, live: LiveSession) -> None:
    """Serve the session until it closes, then close the connection with the closing handshake."""
    with contextlib.suppress(ConnectionError):
        await live.serve(_Hixie76Receiver(writer))
    live.end()
    if not writer.is_closing():
        with contextlib.suppress(ConnectionError):
            writer.write(hixie76.CLOSE_FRAME)
            await writer.drain()
        writer.close()
