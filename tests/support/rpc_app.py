"""A real aiohttp app server, in a thread, answering orbiter's RPC proxy (``POST /rpc``).

The method names what it does: ``whoami`` answers what it was told about the
caller (user, client, its ``session`` cookie), ``echo`` the data, ``big``
300,000 characters, ``deny`` an error, ``slow`` after :data:`SLOW` seconds,
``crash`` HTTP 500, ``nonsense`` a body that is no answer. Every request is recorded.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web

SLOW = 3.0


class RpcApp:
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], Any]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("rpc app did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/rpc"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/rpc", self._rpc)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _rpc(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.calls.append((dict(request.headers), body))
        method = body["method"]
        if method == "whoami":
            return web.json_response(
                {
                    "result": {
                        "user": body["user"],
                        "client": body["client"],
                        "cookie": request.cookies.get("session"),
                    }
                }
            )
        if method == "big":  # an answer larger than one read of the response
            return web.json_response({"result": "x" * 300_000})
        if method == "echo":
            return web.json_response({"result": body["data"]})
        if method == "deny":
            return web.json_response({"error": {"type": "Forbidden", "message": "not you"}})
        if method == "slow":
            await asyncio.sleep(SLOW)
            return web.json_response({"result": "late"})
        if method == "crash":
            return web.Response(status=500, text="boom")
        return web.Response(text="this is no answer")

    def stop(self) -> None:
        async def stop() -> None:
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
