"""The seed's chat.ini, verbatim but for its ports, runs ``orbiter --config=chat.ini``:
its STOMP listener answers, and its [access] rule lets /tcp reach that broker."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from orbiter.ports import free_port
from orbiter.protocol.tcp_websockify import NATIVE_SUBPROTOCOL
from tests.support.seed_server import SeedServer

#: The /tcp subprotocol of orbiter's framing (the open message first); none: websockify.
ORBITER_TCP = (NATIVE_SUBPROTOCOL,)

CHAT_INI = (Path(__file__).parent.parent / "fixtures" / "chat.ini").read_text()


@pytest.fixture(scope="module")
def seed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SeedServer, int]]:
    http_port, stomp_port = free_port(), free_port()
    # The seed's text with only its two ports rewritten to free ones.
    text = CHAT_INI.replace(":9000", f":{http_port}").replace(":61613", f":{stomp_port}")
    assert text.count(str(stomp_port)) == 3  # the listener, a comment, the access rule
    path = tmp_path_factory.mktemp("seed") / "chat.ini"
    path.write_text(text)
    server = SeedServer(path)
    yield server, stomp_port
    server.stop()


def test_starts_from_the_seed_file(seed_server: tuple[SeedServer, int]) -> None:
    server, stomp_port = seed_server
    log = "".join(server.lines)
    assert f"listening on http://0.0.0.0:{server.port}" in log
    assert f":{stomp_port}" in log  # the stomp:// listener


async def test_tcp_socket_reaches_the_embedded_broker(seed_server: tuple[SeedServer, int]) -> None:
    """The seed's [access] rule ``* -> localhost:61613`` lets a page speak STOMP over /tcp."""
    server, stomp_port = seed_server
    url = f"ws://127.0.0.1:{server.port}/tcp?host=localhost&port={stomp_port}"
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url, protocols=ORBITER_TCP)
        assert (await ws.receive(timeout=10)).json()["type"] == "open"
        await ws.send_bytes(b"CONNECT\naccept-version:1.0,1.1,1.2\nhost:localhost\n\n\x00")
        frame = await ws.receive(timeout=10)
        assert frame.data.startswith(b"CONNECTED\n"), frame
        await ws.send_bytes(b"SUBSCRIBE\nid:0\ndestination:/topic/chat\nreceipt:r1\n\n\x00")
        got = b""
        async with asyncio.timeout(10):
            while b"receipt-id:r1" not in got:
                got += (await ws.receive()).data
        await ws.send_bytes(b"SEND\ndestination:/topic/chat\n\nhello over tcp\x00")
        got = b""
        async with asyncio.timeout(10):
            while b"hello over tcp" not in got:
                got += (await ws.receive()).data
        assert got.startswith(b"MESSAGE\n")
        await ws.close()
        # Any other destination stays closed (deny by default).
        ws = await http.ws_connect(
            f"ws://127.0.0.1:{server.port}/tcp/localhost:{server.port}", protocols=ORBITER_TCP
        )
        msg = await ws.receive(timeout=10)
        assert msg.data == 4403
