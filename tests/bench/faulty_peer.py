"""A broadcast server that misbehaves on purpose, to check that the bench notices.

``python -m tests.bench.faulty_peer PORT [--drop N] [--duplicate N] [--delay S]
[--publish-delay S]``: the bench's ``broadcast`` flavor (``/ws?channel=C``,
``POST /pub?channel=C``), except that the first subscriber misses every
N-th publication (``--drop``), gets every N-th twice (``--duplicate``),
every delivery waits ``--delay`` seconds, and each publish is answered only
after ``--publish-delay`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

SUBS = web.AppKey("subs", list[web.WebSocketResponse])
ARGS = web.AppKey("args", argparse.Namespace)
COUNT = web.AppKey("count", list[int])
TASKS = web.AppKey("tasks", set[asyncio.Task[None]])


async def subscribe(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    request.app[SUBS].append(ws)
    async for _ in ws:
        pass
    return ws


async def _deliver(app: web.Application, n: int, payload: str) -> None:
    args = app[ARGS]
    if args.delay:
        await asyncio.sleep(args.delay)
    subs = app[SUBS].copy()
    for i, ws in enumerate(subs):
        if i == 0 and args.drop and n % args.drop == 0:
            continue
        await ws.send_str(payload)
        if i == 0 and args.duplicate and n % args.duplicate == 0:
            await ws.send_str(payload)


async def publish(request: web.Request) -> web.Response:
    app = request.app
    payload = await request.text()
    if app[ARGS].publish_delay:
        await asyncio.sleep(app[ARGS].publish_delay)
    app[COUNT][0] += 1
    n = app[COUNT][0]
    task = asyncio.ensure_future(_deliver(app, n, payload))
    app[TASKS].add(task)
    task.add_done_callback(app[TASKS].discard)
    return web.Response(text="ok")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("--drop", type=int, default=0)
    p.add_argument("--duplicate", type=int, default=0)
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--publish-delay", type=float, default=0.0)
    args = p.parse_args()
    app = web.Application()
    app[SUBS] = []
    app[ARGS] = args
    app[COUNT] = [0]
    app[TASKS] = set()
    app.router.add_get("/ws", subscribe)
    app.router.add_post("/pub", publish)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
