"""Through a real nginx keeping its upstream connections alive (``keepalive``, as
``orbiter cluster`` and docs/deploy.md configure it), a WebSocket opened after
an ordinary request goes over the upstream connection that request left idle,
and is still taken (transports/sniffing.py reads that head again)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import orjson
import pytest

from orbiter.nginx_front import FrontSettings, NginxFront, find_nginx
from orbiter.ports import free_port
from tests.support.server import RunningServer
from tests.transports.test_websocket_after_requests import (
    HEALTH,
    KEY,
    TIMEOUT,
    handshake,
    masked_text,
    publish_request,
    read_answer,
    read_text,
)

NGINX = find_nginx()
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt install nginx)")


@pytest.fixture
def front() -> Iterator[tuple[NginxFront, RunningServer]]:
    server = RunningServer(f'[server]\napi_key = "{KEY}"\n')
    assert NGINX is not None
    nginx = NginxFront(
        FrontSettings(
            listen=f"127.0.0.1:{free_port()}",
            upstreams=(server.url.removeprefix("http://"),),
            access_log="$request_uri $upstream_addr $upstream_status",
            keepalive=64,
        ),
        NGINX,
    )
    try:
        nginx.start()
        yield nginx, server
    finally:
        nginx.stop()
        server.stop()


async def test_a_get_then_a_websocket_through_a_kept_alive_upstream(
    front: tuple[NginxFront, RunningServer],
) -> None:
    nginx, server = front
    # an ordinary request first: nginx keeps its upstream connection for the next one
    reader, writer = await asyncio.open_connection("127.0.0.1", nginx.port)
    writer.write(HEALTH)
    head, _ = await read_answer(reader)
    assert head.startswith(b"HTTP/1.1 200"), head
    writer.close()

    ws_reader, ws_writer = await asyncio.open_connection("127.0.0.1", nginx.port)
    ws_writer.write(handshake())
    head = await asyncio.wait_for(ws_reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert head.startswith(b"HTTP/1.1 101"), head + (await ws_reader.read(500))
    ws_writer.write(masked_text(b'{"id":1,"op":"connect"}'))
    ws_writer.write(masked_text(b'{"id":2,"op":"subscribe","channel":"proxied"}'))
    ids: list[int] = []
    while len(ids) < 2:
        text = await asyncio.wait_for(read_text(ws_reader), TIMEOUT)
        ids += [orjson.loads(line)["id"] for line in text.split(b"\n")]
    assert ids == [1, 2]

    # a publish through nginx reaches the WebSocket
    reader, writer = await asyncio.open_connection("127.0.0.1", nginx.port)
    writer.write(publish_request("proxied"))
    head, body = await read_answer(reader)
    assert head.startswith(b"HTTP/1.1 200"), head + body
    writer.close()
    pushed = orjson.loads(await asyncio.wait_for(read_text(ws_reader), TIMEOUT))
    assert pushed["channel"] == "proxied", pushed
    assert pushed["data"] == {"n": 1}, pushed
    ws_writer.close()
    assert "did not take this WebSocket handshake" not in server.log
