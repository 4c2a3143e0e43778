"""``python -m orbiter.bench.live``: round-trip calls per second and latency of live elements.

Starts ``orbiter serve --element orbiter.bench.live_element:make`` (pinned to
``--server-cpu`` with taskset when there is one, with the frame and call
rates lifted) and, for the RPC proxy, a small aiohttp app server; then ``--clients`` WebSocket
connections each attach an element and make ``--calls`` calls one after
another (one outstanding per connection), for each kind:

- ``call``: the browser calls an exposed sync method (one round trip);
- ``bounce``: an exposed async method that awaits ``call_remote`` on the
  widget, which this client answers (a round trip each way);
- ``rpc``: the browser's ``rpc``, POSTed to the app server (an aiohttp app in
  a process of its own, on ``--app-cpu``) and answered.

It prints calls per second and the p50/p99 latency of each kind (medians of
``--repeat`` runs), and writes them as JSON (``--out``). The numbers in
``docs/benchmarks.md`` come from here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

KINDS = ("call", "bounce", "rpc")
_LISTENING = re.compile(r"listening on (http://\S+)")
CONFIG = """\
[limits]
max_connections_per_ip = 100000
frame_rate = 1000000
[live]
call_rate = 1000000000.0
call_burst = 1000000000
[rpc]
url = "{rpc_url}"
"""


def _percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index]


class _Connection:
    """One browser: calls one at a time, answers the server's calls at once."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._next = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            for line in msg.data.split("\n"):
                obj = orjson.loads(line)
                if obj.get("push") == "call":
                    answer = {"op": "return", "call": obj["call"], "value": obj["args"][0]}
                    await self.ws.send_bytes(orjson.dumps(answer))
                elif (future := self._waiting.pop(obj.get("id"), None)) is not None:
                    future.set_result(obj)

    async def request(self, **fields: Any) -> dict[str, Any]:
        self._next += 1
        future = asyncio.get_running_loop().create_future()
        self._waiting[self._next] = future
        await self.ws.send_bytes(orjson.dumps({"id": self._next, **fields}))
        reply: dict[str, Any] = await future
        if "error" in reply:
            raise RuntimeError(f"{fields.get('op')} failed: {reply['error']}")
        return reply

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


async def _serve_app() -> None:
    """The app server (``--serve-app``): answers every rpc with its data; prints its URL."""

    async def rpc(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"result": body["data"]})

    app = web.Application()
    app.router.add_post("/rpc", rpc)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"listening on http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


def _spawn(cmd: list[str], cpu: str | None, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``cmd`` (pinned to ``cpu``) and wait for its "listening on URL" line."""
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpu, *cmd]
    with log.open("wb") as out:  # a file: nobody has to keep reading a pipe
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        match = _LISTENING.search(log.read_text(errors="replace"))
        if match:
            return process, match.group(1)
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{cmd} did not start:\n" + log.read_text(errors="replace"))


async def _run_kind(url: str, kind: str, clients: int, calls: int) -> dict[str, float]:
    ws_url = url.replace("http://", "ws://") + "/connection/websocket"
    async with aiohttp.ClientSession() as http:
        connections = []
        for _ in range(clients):
            connection = _Connection(await http.ws_connect(ws_url, max_msg_size=0))
            await connection.request(op="connect")
            await connection.request(op="attach", mount="/")
            connections.append(connection)
        latencies: list[float] = []

        async def drive(connection: _Connection) -> None:
            for i in range(calls):
                started = time.perf_counter()
                if kind == "rpc":
                    await connection.request(op="rpc", method="echo", data=i)
                else:
                    await connection.request(
                        op="call", element=1, method=kind if kind == "bounce" else "echo", args=[i]
                    )
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(drive(c) for c in connections))
        elapsed = time.perf_counter() - began
        for connection in connections:
            await connection.close()
    latencies.sort()
    return {
        "calls_per_second": len(latencies) / elapsed,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "calls": float(len(latencies)),
    }


async def _main(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="orbiter-bench-live-") as name:
        workdir = Path(name)
        app, app_url = _spawn(
            [sys.executable, "-m", "orbiter.bench.live", "--serve-app"],
            args.app_cpu,
            workdir / "app.log",
        )
        config = workdir / "orbiter.toml"
        config.write_text(CONFIG.format(rpc_url=app_url + "/rpc"))
        cmd = [sys.executable, "-m", "orbiter", "serve", "--port", "0", "--engine", "memory"]
        cmd += ["--config", str(config), "--element", "orbiter.bench.live_element:make"]
        server, url = _spawn(cmd, args.server_cpu, workdir / "server.log")
        try:
            for kind in args.kinds:
                await _run_kind(url, kind, args.clients, max(1, args.calls // 10))  # warm-up
                runs = [
                    await _run_kind(url, kind, args.clients, args.calls) for _ in range(args.repeat)
                ]
                results[kind] = row = {
                    name: statistics.median(run[name] for run in runs) for name in runs[0]
                }
                print(
                    f"{kind:7} {row['calls_per_second']:10.0f} calls/s   "
                    f"p50 {row['p50_ms']:6.2f} ms   p99 {row['p99_ms']:6.2f} ms",
                    flush=True,
                )
        finally:
            for process in (server, app):
                process.terminate()
                process.wait(15)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m orbiter.bench.live", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--clients", type=int, default=50, help="connections, each one call at a time")
    p.add_argument("--calls", type=int, default=400, help="calls per connection and kind")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"some of {', '.join(KINDS)}")
    p.add_argument("--server-cpu", default="0", help="core for the server (taskset); '' for none")
    p.add_argument("--app-cpu", default="1", help="core for the app server (taskset); '' for none")
    p.add_argument("--loadgen-cpu", type=int, default=1, help="core for this process; -1: any")
    p.add_argument("--serve-app", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--repeat", type=int, default=3, help="runs of each kind (medians shown)")
    p.add_argument("--out", default="bench-live.json", help="JSON result file")
    args = p.parse_args(argv)
    if args.serve_app:
        asyncio.run(_serve_app())
        return 0
    if args.loadgen_cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.loadgen_cpu})
    args.kinds = [k for k in args.kinds.split(",") if k]
    unknown = [k for k in args.kinds if k not in KINDS]
    if unknown:
        p.error(f"unknown kinds {unknown}; choose from {', '.join(KINDS)}")
    args.server_cpu = args.server_cpu or None
    args.app_cpu = args.app_cpu or None
    results = asyncio.run(_main(args))
    Path(args.out).write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
