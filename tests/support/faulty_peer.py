"""A broadcast server that misbehaves on purpose, to check that the bench notices.

``python -m tests.support.faulty_peer PORT [--drop N] [--duplicate N] [--delay S]
[--pace S] [--publish-delay S] [--close]``: the bench's ``broadcast`` flavor
(``/ws?channel=C``, ``POST /pub?channel=C``), except that the first
subscriber misses every N-th publication (``--drop``), gets every N-th
twice (``--duplicate``), every delivery waits ``--delay`` seconds (and the
n-th another n times ``--pace`` seconds: a server that accepts at once and
delivers slowly), each publish is answered only after ``--publish-delay``
seconds, and with ``Connection: close`` (``--close``, as Pushpin's control
API does). ``--subscribe-after S`` joins each subscriber to the broadcast
only S seconds after its handshake, with nothing to tell the client (as
Pushpin's handler does with its origin's GRIP subscribe); ``POST /publish/``
takes Pushpin's control API format (``{"items": [{"channel",
"formats": {"ws-message": {"content"}}}]}``), so the bench's ``pushpin``
flavor runs against this server too.

It also speaks orbiter's long polls (``GET /poll?channel=C[&since=N&epoch=E]``,
published to by ``POST /api/publish`` with ``{"channel", "data"}``), with
the same faults for the first connection that polls: ``--drop`` leaves
publications out of its answers (the position still moves past them),
``--duplicate`` answers a position one short once, so the next poll gets
that publication again; ``--refuse-polls`` answers every poll 503.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from aiohttp import web

SUBS = web.AppKey("subs", list[web.WebSocketResponse])
ARGS = web.AppKey("args", argparse.Namespace)
COUNT = web.AppKey("count", list[int])
TASKS = web.AppKey("tasks", set[asyncio.Task[None]])
#: Long polls: every publication's payload (offset i + 1), a condition woken by each,
#: the first polling connection's transport, and the offsets already answered twice.
LOG = web.AppKey("log", list[str])
NEWS = web.AppKey("news", asyncio.Condition)
FIRST = web.AppKey("first", list[object])
DOUBLED = web.AppKey("doubled", set[int])
EPOCH = "e1"


async def subscribe(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    after = request.app[ARGS].subscribe_after
    if after:
        asyncio.get_running_loop().call_later(after, request.app[SUBS].append, ws)
    else:
        request.app[SUBS].append(ws)
    async for _ in ws:
        pass
    return ws


async def _deliver(app: web.Application, n: int, payload: str) -> None:
    args = app[ARGS]
    if args.delay or args.pace:
        await asyncio.sleep(args.delay + args.pace * n)
    subs = app[SUBS].copy()
    for i, ws in enumerate(subs):
        if i == 0 and args.drop and n % args.drop == 0:
            continue
        await ws.send_str(payload)
        if i == 0 and args.duplicate and n % args.duplicate == 0:
            await ws.send_str(payload)


async def publish(request: web.Request) -> web.Response:
    return await _publish(request, await request.text())


async def pushpin_publish(request: web.Request) -> web.Response:
    body = await request.json()
    return await _publish(request, body["items"][0]["formats"]["ws-message"]["content"])


async def _publish(request: web.Request, payload: str) -> web.Response:
    app = request.app
    if app[ARGS].publish_delay:
        await asyncio.sleep(app[ARGS].publish_delay)
    app[COUNT][0] += 1
    n = app[COUNT][0]
    task = asyncio.ensure_future(_deliver(app, n, payload))
    app[TASKS].add(task)
    task.add_done_callback(app[TASKS].discard)
    response = web.Response(text="ok")
    if app[ARGS].close:
        response.force_close()
    return response


async def api_publish(request: web.Request) -> web.Response:
    app = request.app
    body = await request.json()
    app[LOG].append(body["data"])
    async with app[NEWS]:
        app[NEWS].notify_all()
    return web.json_response({"result": {}})


def _page(channel: str, offset: int, publications: list[dict[str, object]]) -> web.Response:
    text = json.dumps(
        {
            "channel": channel,
            "epoch": EPOCH,
            "offset": offset,
            "recoverable": True,
            "publications": publications,
        }
    )
    return web.Response(text=text, content_type="application/json")


async def poll(request: web.Request) -> web.Response:
    app = request.app
    args = app[ARGS]
    channel = request.query["channel"]
    if args.refuse_polls:
        return web.Response(status=503, text="busy", headers={"Retry-After": "1"})
    log = app[LOG]
    if "since" not in request.query:
        return _page(channel, len(log), [])
    since = int(request.query["since"])
    if not app[FIRST]:
        app[FIRST].append(request.transport)
    faulty = app[FIRST][0] is request.transport
    async with app[NEWS]:
        try:
            await asyncio.wait_for(app[NEWS].wait_for(lambda: len(log) > since), 25)
        except TimeoutError:
            return _page(channel, since, [])
    offset = len(log)
    pubs = []
    for n in range(since + 1, offset + 1):
        if faulty and args.drop and n % args.drop == 0:
            continue
        pubs.append({"offset": n, "data": log[n - 1], "time": 0.0})
        if faulty and args.duplicate and n % args.duplicate == 0 and n not in app[DOUBLED]:
            app[DOUBLED].add(n)
            offset = n - 1  # the next poll asks from before n: n comes again
            break
    return _page(channel, offset, pubs)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("--drop", type=int, default=0)
    p.add_argument("--duplicate", type=int, default=0)
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--pace", type=float, default=0.0)
    p.add_argument("--publish-delay", type=float, default=0.0)
    p.add_argument("--close", action="store_true")
    p.add_argument("--refuse-polls", action="store_true")
    p.add_argument("--subscribe-after", type=float, default=0.0)
    args = p.parse_args()
    app = web.Application()
    app[SUBS] = []
    app[ARGS] = args
    app[COUNT] = [0]
    app[TASKS] = set()
    app[LOG] = []
    app[NEWS] = asyncio.Condition()
    app[FIRST] = []
    app[DOUBLED] = set()
    app.router.add_get("/ws", subscribe)
    app.router.add_post("/pub", publish)
    app.router.add_post("/publish/", pushpin_publish)
    app.router.add_post("/api/publish", api_publish)
    app.router.add_get("/poll", poll)
    web.run_app(
        app, host="127.0.0.1", port=args.port, access_log=None, print=None, shutdown_timeout=0.5
    )


if __name__ == "__main__":
    main()
