"""A real aiohttp app server, in a thread of the test process, answering orbiter's hooks.

What it answers depends on what the browser sent (its ``session`` cookie)
and on the channel or payload, so that tests can make a hook allow, deny,
rewrite, time out, crash or talk nonsense. Every call is recorded.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web

#: Seconds the "slow" answers take: longer than the hooks.timeout the tests set.
SLOW = 3.0


class AppServer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str], Any]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("app server did not start")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/connect", self._connect)
        app.router.add_post("/subscribe", self._subscribe)
        app.router.add_post("/publish", self._publish)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _record(self, name: str, request: web.Request) -> Any:
        body = await request.json()
        self.calls.append((name, dict(request.headers), body))
        return body

    async def _connect(self, request: web.Request) -> web.Response:
        await self._record("connect", request)
        who = request.cookies.get("session", "")
        if who == "slow":
            await asyncio.sleep(SLOW)
        if who == "crash":
            raise RuntimeError("the app crashed")  # aiohttp answers 500
        if who == "garbage":
            return web.Response(text="<html>oops</html>")
        if who.startswith("user-"):
            user = who.removeprefix("user-")
            return web.json_response({"allow": True, "user": user, "info": {"via": "hook"}})
        return web.json_response({"allow": False, "reason": "not logged in"})

    async def _subscribe(self, request: web.Request) -> web.Response:
        body = await self._record("subscribe", request)
        channel = body["channel"]
        if channel.endswith(":slow"):
            await asyncio.sleep(SLOW)
        if channel.endswith(":crash"):
            return web.Response(status=500, text="boom")
        if channel.endswith(":garbage"):
            return web.Response(text="yes")
        allowed = channel == f"hooked:{body['user']}" or channel == "hooked:lobby"
        return web.json_response({"allow": allowed, "reason": "not your channel"})

    async def _publish(self, request: web.Request) -> web.Response:
        body = await self._record("publish", request)
        text = body["data"].get("text", "") if isinstance(body["data"], dict) else ""
        if text == "slow":
            await asyncio.sleep(SLOW)
        if text == "crash":
            return web.Response(status=502)
        if text == "deny":
            return web.json_response({"allow": False, "reason": "no shouting"})
        if text == "keep":
            return web.json_response({"allow": True})
        if text == "big":  # an answer many TCP segments long
            return web.json_response({"allow": True, "data": {"text": "b" * 300_000}})
        rewritten = {"text": text.upper(), "by": body["user"]}
        return web.json_response({"allow": True, "data": rewritten})

    def stop(self) -> None:
        async def stop() -> None:
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
