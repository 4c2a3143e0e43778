"""The dashboard's live numbers: the reserved channel ``$admin`` and the WebSocket reading it.

While something on this node is subscribed to ``$admin``, the node publishes
its numbers there once a second (the same sample ``/metrics`` reads, see
:func:`orbiter.http.metrics.node_sample`), through PubSub like any
publication (so they count in the publications they report); while nobody
watches, nothing is published. Channels starting with ``$`` are the
server's: no client names one on any route (``protocol/native.py``'s
reserved prefix), so the only reader is ``GET /admin/feed``: a WebSocket
whose first message must be ``{"key": "<server.api_key>"}`` within
:data:`KEY_TIMEOUT` seconds (a browser cannot set a header on a WebSocket,
and a key in the URL would be logged). A wrong key closes it with 4401, no
configured key with 4403, a page of another origin is refused 403. From its
handshake to its close it counts in the connection limits like any client
connection (:meth:`orbiter.node.Node.admit`): past them it is refused 503
before the handshake, so sockets held unauthenticated cannot exhaust them. Then it
gets ``{"hello": {"node", "interval"}}`` and each sample as one text message;
a reader that falls :data:`MAX_QUEUED` samples behind misses the next ones.

On a clustered engine (Redis, ``--workers N``) each tick also asks the other
nodes for their sample through the engine's survey
(:func:`orbiter.http.api_cluster.every_share`, kind :data:`SURVEY_KIND`): one
survey per tick, only while this node has a reader. The sample published then
carries ``cluster: {nodes, answered, by_node}`` (the nodes alive, how many
answered, and each answering node's sample, this node's first); the page sums
``by_node`` for its tiles and shows each node's row. Samples are published
through PubSub, so on Redis every node's ``$admin`` readers get every node's
samples: the page keeps those of the node that said ``hello``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
from aiohttp import WSMsgType, web

from orbiter.engine.base import PublishFailed
from orbiter.http.admin_api import check_admin
from orbiter.http.api import ApiError
from orbiter.http.api_cluster import every_share
from orbiter.http.metrics import NODE_NAME
from orbiter.model import JSON, TooManyConnections
from orbiter.services.shared_batch import SharedBatch
from orbiter.transports.app_keys import NODE
from orbiter.transports.sse import busy

if TYPE_CHECKING:
    from orbiter.node import Node

ADMIN_CHANNEL = "$admin"
FEED_PATH = "/admin/feed"
#: Seconds between two samples, and that a feed has to send its key.
INTERVAL = 1.0
KEY_TIMEOUT = 5.0
#: Samples one reader may have waiting.
MAX_QUEUED = 16
#: The survey kind every node answers with its sample.
SURVEY_KIND = "admin_sample"


class StatsPublisher:
    """Publishes ``sample()`` to ``$admin`` every :data:`INTERVAL` while it has subscribers."""

    def __init__(self, node: Node, sample: Callable[[], dict[str, Any]]) -> None:
        self._node = node
        self._sample = sample
        self._task: asyncio.Task[None] | None = None

    def watch(self) -> None:
        """Someone subscribed: publish from now on (unless already publishing)."""
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        pubsub = self._node.pubsub
        while pubsub.subscriber_count(ADMIN_CHANNEL) > 0:
            with contextlib.suppress(PublishFailed):  # a full disk: the next one may go
                await pubsub.publish(ADMIN_CHANNEL, await self.cluster_sample())
            await asyncio.sleep(INTERVAL)

    async def cluster_sample(self) -> dict[str, Any]:
        """This node's sample; on a clustered engine with ``cluster`` (see the module's
        docstring) from one survey of the other nodes."""
        own = self._sample()
        if not self._node.broker.clustered:
            return own
        nodes, answers = await every_share(self._node, SURVEY_KIND, own)
        samples = [answer for answer in answers if isinstance(answer, dict)]
        return {**own, "cluster": {"nodes": nodes, "answered": len(samples), "by_node": samples}}

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class _Reader:
    """A feed's subscription to ``$admin`` (a PubSub subscriber): samples queued, bounded."""

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.user: str | None = None
        self.info: JSON = None
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(MAX_QUEUED)

    def deliver_batch(self, batch: SharedBatch) -> None:
        for pub in batch.pubs:
            if not self.queue.full():
                self.queue.put_nowait(orjson.dumps(pub.data))

    def deliver_presence(self, channel: str, message: bytes) -> None:
        """``$admin`` has no presence."""


def _same_origin(request: web.Request) -> bool:
    """A page's WebSocket comes from this server's own pages (no Origin: not a browser)."""
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc.lower() == request.host.lower()


_PUBLISHER = web.AppKey("admin_publisher", StatsPublisher)


async def feed(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    if not _same_origin(request):
        raise web.HTTPForbidden(text="the admin feed is for this server's own pages")
    peer = request.remote or "?"
    try:
        node.admit(peer)
    except TooManyConnections as exc:
        return busy(exc)
    try:
        return await _serve(request, node)
    finally:
        node.release(peer)


async def _serve(request: web.Request, node: Node) -> web.WebSocketResponse:
    """The feed of one admitted page: its key first, then the samples until it goes."""
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=4096)
    await ws.prepare(request)
    try:
        first = await asyncio.wait_for(ws.receive(), KEY_TIMEOUT)
    except TimeoutError:
        await ws.close(code=4401, message=b'send {"key": ...} first')
        return ws
    key = None
    if first.type is WSMsgType.TEXT:
        with contextlib.suppress(orjson.JSONDecodeError):
            sent = orjson.loads(first.data)
            key = sent.get("key") if isinstance(sent, dict) else None
    try:
        check_admin(node, key if isinstance(key, str) else None, None)
    except ApiError as exc:
        await ws.close(code=4403 if exc.status == 403 else 4401, message=exc.message.encode())
        return ws
    reader = _Reader(f"admin-{id(ws):x}")
    await node.pubsub.subscribe(reader, ADMIN_CHANNEL)
    writer = asyncio.ensure_future(_write(ws, reader))
    try:
        hello = {"hello": {"node": NODE_NAME, "interval": INTERVAL}}
        await ws.send_str(orjson.dumps(hello).decode())
        request.app[_PUBLISHER].watch()
        async for _ in ws:  # nothing to read: until the page goes
            pass
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        await node.pubsub.unsubscribe(reader, ADMIN_CHANNEL)
    return ws


async def _write(ws: web.WebSocketResponse, reader: _Reader) -> None:
    """Send the samples as they come, until the page is gone."""
    with contextlib.suppress(ConnectionError, RuntimeError):  # gone mid-send
        while not ws.closed:
            await ws.send_str((await reader.queue.get()).decode())


def add_admin_feed(app: web.Application, node: Node, sample: Callable[[], dict[str, Any]]) -> None:
    publisher = app[_PUBLISHER] = StatsPublisher(node, sample)
    node.broker.set_answerer(SURVEY_KIND, lambda _: sample())

    async def stop(app: web.Application) -> None:
        await publisher.close()

    app.on_shutdown.append(stop)
    app.router.add_get(FEED_PATH, feed)
