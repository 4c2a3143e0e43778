"""Python work per native WebSocket connect and disconnect, in one process: a profiling aid.

Run: ``.venv/bin/python -m tests.support.profile_connect_path [--connects 2000]
[--count]``. What ``orbiter bench churn`` makes a server do, without the
kernel: each connection is accepted by the sniffer of a runner set up as
``orbiter serve`` sets it up (the node as its connection gate, the head
deadline), sends the WebSocket handshake, a native ``connect`` and a
``subscribe`` to one of 50 channels (where three others stay subscribed, as
in the bench), gets both replies, and goes (EOF, then the connection is
lost). The transport is a stand-in that keeps nothing, so
the figure is the interpreter's share alone. ``--count``: the work per
connect (calls, bytecodes, memory blocks still held after the connections
are gone: :class:`~tests.support.work_counter.WorkCounter`) instead of the
time, which does not vary with the machine's load. The same file runs
against another tree (``cd TREE && PYTHONPATH=TREE python
/work/main/tests/support/profile_connect_path.py``), to compare two trees
with one harness. Not a test: pytest does not collect it.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import orjson
import uvloop

from orbiter.bench.spawn import BENCH_CONFIG
from orbiter.http.app import build_app
from orbiter.node import Node

# This file also runs against an older tree (see the docstring), whose modules
# were elsewhere: b67c848's, the tree issues 13 and 14 are measured against.
try:
    from orbiter.config.settings import config_from_dict
except ImportError:
    from orbiter.config import config_from_dict  # type: ignore[attr-defined,no-redef]
try:
    from orbiter.transports.app_keys import RAW_ROUTERS
    from orbiter.transports.sniffing import SniffingRunner, first_claim
except ImportError:
    from orbiter.http.keys import RAW_ROUTERS  # type: ignore[import-not-found,no-redef]
    from orbiter.http.sniffing import (  # type: ignore[import-not-found,no-redef]
        SniffingRunner,
        first_claim,
    )
try:
    from tests.support.work_counter import WorkCounter
except ImportError:  # this file's neighbour, in whatever tree it runs
    sys.path.insert(0, str(Path(__file__).parent))
    from work_counter import WorkCounter  # type: ignore[import-not-found,no-redef]

HANDSHAKE = (
    b"GET /connection/websocket HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)
CHANNELS = 50


def masked_text(payload: bytes) -> bytes:
    """A client's text frame (a fixed mask: the same bytes every run)."""
    mask = b"\x11\x22\x33\x44"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x81, 0x80 | len(payload))) + mask + masked


def commands(channel: int) -> bytes:
    subscribe = {"id": 2, "op": "subscribe", "channel": f"bench{channel}"}
    return masked_text(b'{"id":1,"op":"connect"}') + masked_text(orjson.dumps(subscribe))


#: What each connection sends after its handshake (made once: the harness's own work
#: stays out of the counts).
COMMANDS = [commands(channel) for channel in range(CHANNELS)]


class ChurnTransport(asyncio.Transport):
    """A connection's transport: counts writes, keeps nothing, closes when asked."""

    def __init__(self, peer: tuple[str, int]) -> None:
        super().__init__()
        self.protocol: Any = None
        self.peer = peer
        self.writes = 0
        self.closed = False
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self.peer
        if name == "sockname":
            return ("127.0.0.1", 8000)
        return default

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.protocol  # type: ignore[no-any-return]

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes += 1

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_reading(self) -> bool:
        return self.reading

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


async def connect_once(factory: Any, index: int, *, leave: bool = True) -> ChurnTransport:
    """One connection's life, as the bench's churn makes it (``leave=False``: it stays)."""
    transport = ChurnTransport(("127.0.0.1", 40000 + index % 20000))
    sniffer = factory()
    transport.protocol = sniffer
    sniffer.connection_made(transport)
    sniffer.data_received(HANDSHAKE)
    transport.protocol.data_received(COMMANDS[index % CHANNELS])
    for _ in range(50):  # the two replies (a subscribe may wait for the engine)
        if transport.writes >= 2:
            break
        await asyncio.sleep(0)
    assert transport.writes >= 2, "no replies"
    if leave:
        await disconnect(transport)
    return transport


async def disconnect(transport: ChurnTransport) -> None:
    """The client goes: EOF, then the connection is lost."""
    transport.protocol.eof_received()
    transport.closed = True
    transport.protocol.connection_lost(None)
    for _ in range(3):  # what the loss schedules (leaving the channel)
        await asyncio.sleep(0)


async def measure(connects: int, count: bool) -> None:
    config = config_from_dict(tomllib.loads(BENCH_CONFIG.format(session="", limits="")))
    node = Node(config)
    await node.start()
    app = build_app(node)
    options: dict[str, Any] = {"handle_signals": False, "access_log": None}
    if "gate" in inspect.signature(SniffingRunner.__init__).parameters:  # as orbiter serve
        options |= {"gate": node, "head_timeout": config.limits.head_timeout}
        options["keepalive_timeout"] = config.limits.head_timeout
    runner = SniffingRunner(app, first_claim(app[RAW_ROUTERS]), **options)
    await runner.setup()
    factory = runner.server
    # The others on each channel (the bench's 200 on 50).
    staying = [await connect_once(factory, index, leave=False) for index in range(3 * CHANNELS)]
    for index in range(connects // 4):  # warm-up: every channel once, caches filled
        await connect_once(factory, index)
    counter = WorkCounter()
    if count:
        counter.__enter__()
    started = time.process_time()
    for index in range(connects):
        await connect_once(factory, index)
    spent = time.process_time() - started
    if count:
        counter.__exit__(None, None, None)
        print(f"{counter.per(connects)}; bytecodes by function:")
        print(counter.top(connects, 400))
    print(f"{spent / connects * 1e6:.1f} µs of CPU per connect; {len(node.sessions)} sessions stay")
    for transport in staying:
        await disconnect(transport)
    await runner.cleanup()
    await node.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connects", type=int, default=2000)
    parser.add_argument("--count", action="store_true", help="count the work, not the time")
    args = parser.parse_args()
    uvloop.run(measure(args.connects, args.count))


if __name__ == "__main__":
    main()
