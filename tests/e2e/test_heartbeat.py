"""Heartbeats: a client that vanishes without a FIN is freed within interval + timeout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from orbiter import AsyncClient
from tests.support.relay import Relay
from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient

CONFIG = """
[session]
ping_interval = 1
pong_timeout = 1
"""


async def test_vanished_client_is_dropped_and_leaves_presence(
    start_server: Callable[..., RunningServer],
) -> None:
    srv = start_server(CONFIG)
    host, port = srv.url.removeprefix("http://").rsplit(":", 1)
    relay = Relay(host, int(port))
    try:
        watcher = await NativeClient.open(srv.ws_url, user="watcher", location="/hb")
        await watcher.call("subscribe", channel="chat:hb")
        ghost_url = f"ws://127.0.0.1:{relay.port}/connection/websocket"
        ghost = await NativeClient.open(ghost_url, user="ghost", location="/hb")
        await ghost.call("subscribe", channel="chat:hb")
        assert (await watcher.next_push())["push"] == "join"

        # An idle but healthy connection survives several ping intervals.
        await asyncio.sleep(2.5)
        assert not watcher.closed.is_set()
        assert not ghost.closed.is_set()

        relay.freeze()
        frozen_at = time.monotonic()
        leave = await watcher.next_push(timeout=10)
        elapsed = time.monotonic() - frozen_at
        assert leave == {"push": "leave", "channel": "chat:hb", "user": "ghost"}
        assert elapsed < 1 + 1 + 2, f"freed after {elapsed:.1f} s"
        async with AsyncClient(srv.url) as api:
            assert (await api.channels())["chat:hb"] == 1
        await watcher.close()
        relay.cut()
        await ghost.close()
    finally:
        relay.close()
