"""Relay throughput of the TCP proxy: MB/s through ``/tcp`` vs a direct TCP connection.

Run: ``.venv/bin/python -m tests.support.bench_tcp_relay [--mib 256] [--chunk 60000] [--runs 3]``

A backend in its own process sinks (upstream) or sources (downstream) the
bytes; a real ``orbiter serve`` (its own process) relays them; the client
is aiohttp's WebSocket client for the proxy, a plain asyncio stream for the
direct connection. Each direction is timed from the first byte sent to the
last byte accounted for. Not a test: pytest does not collect it.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import time

import aiohttp

from orbiter.protocol.tcp_websockify import NATIVE_SUBPROTOCOL
from tests.support.server import RunningServer

#: The /tcp subprotocol of orbiter's framing (the open message first); none: websockify.
ORBITER_TCP = (NATIVE_SUBPROTOCOL,)

MIB = 1024 * 1024


def _backend(listener: socket.socket, total: int) -> None:
    """Per connection: the first byte says the mode: 'u' sink ``total`` then ack; 'd' source."""
    chunk = b"d" * 65536
    while True:
        conn, _ = listener.accept()
        with conn:
            mode = conn.recv(1)
            if mode == b"u":
                got = 0
                while got < total:
                    data = conn.recv(1 << 20)
                    if not data:
                        break
                    got += len(data)
                conn.sendall(b"!")
            elif mode == b"d":
                sent = 0
                while sent < total:
                    conn.sendall(chunk)
                    sent += len(chunk)


async def direct(port: int, total: int, chunk: int, mode: bytes) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=4 * MIB)
    start = time.perf_counter()
    writer.write(mode)
    if mode == b"u":
        block = b"u" * chunk
        for _ in range(total // chunk):
            writer.write(block)
            await writer.drain()
        await reader.readexactly(1)
    else:
        got = 0
        while got < total:
            got += len(await reader.read(1 << 20))
    elapsed = time.perf_counter() - start
    writer.close()
    return elapsed


async def proxied(url: str, total: int, chunk: int, mode: bytes) -> float:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url, max_msg_size=0, protocols=ORBITER_TCP)
        await ws.receive()  # {"type": "open"}
        start = time.perf_counter()
        await ws.send_bytes(mode)
        if mode == b"u":
            block = b"u" * chunk
            for _ in range(total // chunk):
                await ws.send_bytes(block)
            await ws.receive()  # the backend's ack
        else:
            got = 0
            while got < total:
                got += len((await ws.receive()).data)
        elapsed = time.perf_counter() - start
        await ws.close()
        return elapsed


async def run(total: int, chunk: int, runs: int) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    total = total // chunk * chunk
    backend = multiprocessing.Process(target=_backend, args=(listener, total), daemon=True)
    backend.start()
    server = RunningServer(
        f'[tcp]\nidle_timeout = 600\n\n[[tcp.access]]\nto = "127.0.0.1:{port}"\n'
    )
    try:
        url = server.url.replace("http://", "ws://") + f"/tcp/127.0.0.1:{port}"
        print(f"{total / MIB:.0f} MiB per run, {chunk}-byte writes, best of {runs} runs\n")
        print("| direction | direct MB/s | through /tcp MB/s | ratio |")
        print("|---|---|---|---|")
        for name, mode in (("browser -> backend", b"u"), ("backend -> browser", b"d")):
            d = min([await direct(port, total, chunk, mode) for _ in range(runs)])
            p = min([await proxied(url, total, chunk, mode) for _ in range(runs)])
            mb = total / 1e6
            print(f"| {name} | {mb / d:.0f} | {mb / p:.0f} | {d / p:.2f} |")
    finally:
        server.stop()
        backend.terminate()
        listener.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=256, help="MiB per run")
    parser.add_argument("--chunk", type=int, default=60000, help="bytes per write (< 64 KiB)")
    parser.add_argument("--runs", type=int, default=3, help="runs per case; the best is shown")
    args = parser.parse_args()
    import uvloop  # the client's loop is the server's, so neither side is favoured

    uvloop.run(run(args.mib * MIB, args.chunk, args.runs))


if __name__ == "__main__":
    main()
