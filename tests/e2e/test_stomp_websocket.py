"""STOMP over WebSocket at ``/stomp``: subprotocol negotiation, frames split across
messages, binary bodies, and the origin check."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest

from orbiter.protocol.stomp import Frame, FrameParser, encode_frame
from tests.support.server import RunningServer
from tests.support.stomp_helpers import start_stomp_server


@pytest.fixture(scope="module")
def broker() -> Iterator[RunningServer]:
    srv, _ = start_stomp_server()
    yield srv
    srv.stop()


def ws_url(srv: RunningServer) -> str:
    return srv.url.replace("http://", "ws://") + "/stomp"


async def read_frames(ws: aiohttp.ClientWebSocketResponse, parser: FrameParser, count: int):
    frames: list[Frame] = []
    while len(frames) < count:
        msg = await ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), msg
        data = msg.data.encode() if msg.type is aiohttp.WSMsgType.TEXT else msg.data
        frames += parser.feed(data)
    return frames


@pytest.mark.parametrize(("offered", "version"), [("v10.stomp", "1.0"), ("v11.stomp", "1.1")])
async def test_subprotocols_and_frames_split_across_messages(broker, offered, version):
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_url(broker), protocols=(offered,)) as ws,
    ):
        assert ws.protocol == offered
        parser = FrameParser(version=version)
        connect = encode_frame("CONNECT", [("accept-version", version), ("host", "x")])
        for i in range(0, len(connect), 7):  # the CONNECT frame in 7-byte pieces
            await ws.send_str(connect[i : i + 7].decode())
        (connected,) = await read_frames(ws, parser, 1)
        assert connected.get("version") == version
        subscribe = [("id", "1"), ("destination", "/queue/ws-bin"), ("receipt", "r")]
        await ws.send_bytes(encode_frame("SUBSCRIBE", subscribe, b"", version))
        body = bytes(range(256))
        send = [("destination", "/queue/ws-bin"), ("content-type", "application/octet-stream")]
        await ws.send_bytes(encode_frame("SEND", send, body, version))
        receipt, message = await read_frames(ws, parser, 2)
        assert receipt.command == "RECEIPT"
        assert message.command == "MESSAGE"
        assert message.body == body
        assert message.get("content-type") == "application/octet-stream"


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (("v10.stomp", "v11.stomp", "v12.stomp"), "v12.stomp"),  # stomp.js's order
        (("v10.stomp", "v11.stomp"), "v11.stomp"),
        (("mqtt", "v10.stomp"), "v10.stomp"),
    ],
)
async def test_the_highest_version_offered_is_chosen_whatever_the_order(broker, offered, chosen):
    """Issue 18: aiohttp took the first the client listed (STOMP 1.0 for stomp.js)."""
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_url(broker), protocols=offered) as ws,
    ):
        assert ws.protocol == chosen


async def test_a_page_of_a_foreign_origin_is_refused(broker):
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(
                ws_url(broker), protocols=("v12.stomp",), headers={"Origin": "https://evil.example"}
            )
        assert refused.value.status == 403
