"""SockJS sessions need no sticky routing: one session's requests alternating between nodes.

Two ``orbiter serve`` processes on one real ``redis-server``; each request
of a session goes to the other node than the one before, as a round-robin
proxy would send it. The node that opened a session holds it; the other
relays its requests there through Redis (``transports/sockjs/remote.py``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis

from orbiter import AsyncClient
from orbiter.ports import free_port
from tests.support.rawhttp import fetch
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_server import RedisServer
from tests.support.server import RunningServer
from tests.support.tcp_backends import Echo

#: The TCP proxy's backend for its SockJS sessions.
ECHO_PORT = free_port()


class Cluster:
    def __init__(self) -> None:
        self.redis = RedisServer()
        args = ("--engine", self.redis.url, "--sockjs-test-services")
        config = f'[orbited]\nresponse_limit = 3000\n[[tcp.access]]\nto = "127.0.0.1:{ECHO_PORT}"\n'
        self.nodes = [RunningServer(config, args=args) for _ in range(2)]
        self.urls = [node.url for node in self.nodes]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.redis.close()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    running = Cluster()
    yield running
    running.stop()


class Alternating:
    """A SockJS session over xhr-polling whose every request goes to the next node."""

    def __init__(self, urls: list[str], service: str = "", prefix: str = "/sockjs") -> None:
        session = f"000/{uuid.uuid4()}"
        self.bases = [f"{url}{prefix}{service}/{session}" for url in urls]
        self.turn = 0
        self.frames: list[str] = []

    def next_base(self) -> str:
        base = self.bases[self.turn % len(self.bases)]
        self.turn += 1
        return base

    async def poll(self) -> str:
        head, body = await fetch(self.next_base() + "/xhr", "POST")
        assert head.status == 200, body
        frame = body.decode().rstrip("\n")
        self.frames.append(frame)
        return frame

    async def send(self, *messages: str) -> int:
        head, _ = await fetch(
            self.next_base() + "/xhr_send", "POST", body=json.dumps(list(messages)).encode()
        )
        return head.status

    def messages(self) -> list[str]:
        got: list[str] = []
        for frame in self.frames:
            if frame.startswith("a"):
                got += json.loads(frame[1:])
        return got


async def test_echo_sends_and_polls_alternating_arrive_once_in_order(cluster: Cluster) -> None:
    session = Alternating(cluster.urls, "/echo")
    assert await session.poll() == "o"
    sent = [f"m{i}" for i in range(24)]
    async with asyncio.timeout(30):
        for i in range(0, len(sent), 2):
            assert await session.send(sent[i]) == 204
            assert await session.send(sent[i + 1]) == 204
            if i % 4 == 0:
                await session.poll()
        while len(session.messages()) < len(sent):
            await session.poll()
    assert session.messages() == sent


async def test_native_publications_reach_an_alternating_poller_once_in_order(
    cluster: Cluster,
) -> None:
    session = Alternating(cluster.urls)
    assert await session.poll() == "o"
    ids = 0

    async def call(op: str, **fields: Any) -> dict[str, Any]:
        nonlocal ids
        ids += 1
        command = json.dumps({"id": ids, "op": op, **fields})
        assert await session.send(command) == 204
        for _ in range(10):
            for message in session.messages():
                reply: dict[str, Any] = json.loads(message)
                if reply.get("id") == ids:
                    return reply
            await session.poll()
        raise AssertionError(f"no reply to {op}")

    async with asyncio.timeout(40):
        assert "client" in (await call("connect"))["result"]
        assert (await call("subscribe", channel="feed"))["result"]["channel"] == "feed"

        async def publish() -> None:
            async with AsyncClient(cluster.urls[0]) as a, AsyncClient(cluster.urls[1]) as b:
                for i in range(30):
                    await (a, b)[i % 2].publish("feed", i)
                    await asyncio.sleep(0.01 if i % 3 else 0.1)  # some polls are held

        publisher = asyncio.create_task(publish())

        def pubs() -> list[int]:
            pushes = [json.loads(m) for m in session.messages()]
            return [p["data"] for p in pushes if p.get("push") == "pub"]

        while len(pubs()) < 30:
            await session.poll()
        await publisher
    assert pubs() == list(range(30))
    assert session.turn >= 8  # both nodes answered many requests


async def test_the_tcp_proxy_over_sockjs_alternating_nodes(cluster: Cluster) -> None:
    backend = await Echo(ECHO_PORT).start()
    try:
        session = Alternating(cluster.urls, prefix="/tcp/sockjs")
        assert await session.poll() == "o"
        connect = {"type": "connect", "host": "127.0.0.1", "port": ECHO_PORT}
        assert await session.send(json.dumps(connect)) == 204
        chunks = [bytes([i]) * (i + 1) for i in range(20)]
        echoed = b""
        async with asyncio.timeout(30):
            for chunk in chunks:
                assert await session.send(base64.b64encode(chunk).decode()) == 204
            while len(echoed) < sum(map(len, chunks)):
                await session.poll()
                data = [m for m in session.messages() if not m.startswith("{")]
                echoed = b"".join(base64.b64decode(m) for m in data)
        assert echoed == b"".join(chunks)
        assert backend.received == b"".join(chunks)
    finally:
        await backend.stop()


async def test_a_second_receiver_on_the_other_node_is_refused(cluster: Cluster) -> None:
    session = Alternating(cluster.urls, "/echo")
    assert await session.poll() == "o"  # node 0 holds it
    owner, other = session.bases
    held = asyncio.create_task(fetch(owner + "/xhr", "POST"))  # waits for a frame
    await asyncio.sleep(0.3)
    head, body = await fetch(other + "/xhr", "POST")
    assert body == b'c[2010,"Another connection still open"]\n'
    assert not held.done()
    head, _ = await fetch(other + "/xhr_send", "POST", body=b'["x"]')
    assert head.status == 204
    _, body = await asyncio.wait_for(held, 10)
    assert body == b'a["x"]\n'


async def test_a_jsonp_poll_and_jsonp_send_on_the_other_node(cluster: Cluster) -> None:
    session = Alternating(cluster.urls, "/echo")
    assert await session.poll() == "o"  # on node 0
    other = session.bases[1]
    head, _ = await fetch(
        other + "/jsonp_send",
        "POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        body=b"d=%5B%22j%22%5D",
    )
    assert head.status == 200
    head, body = await fetch(other + "/jsonp?c=cb", "GET")
    assert head.status == 200
    assert body == b'/**/cb("a[\\"j\\"]");\r\n'


@pytest.mark.parametrize(
    ("transport", "method", "prelude", "framed"),
    [
        ("xhr_streaming", "POST", "h" * 2048 + "\n", "a{}\n"),
        ("eventsource", "GET", "\r\n", "data: a{}\r\n\r\n"),
        ("htmlfile?c=cb", "GET", "", 'p("a{}");'),
    ],
)
async def test_streaming_receivers_on_the_other_node(
    cluster: Cluster, transport: str, method: str, prelude: str, framed: str
) -> None:
    session = Alternating(cluster.urls, "/echo")
    assert await session.poll() == "o"
    owner, other = session.bases
    streaming = asyncio.create_task(fetch(f"{other}/{transport}", method))
    await asyncio.sleep(0.3)
    assert (await fetch(owner + "/xhr_send", "POST", body=b'["y"]'))[0].status == 204
    # The echo service's streaming responses end after 4096 bytes: this one ends it.
    big = json.dumps(["z" * 4200])
    assert (await fetch(other + "/xhr_send", "POST", body=big.encode()))[0].status == 204
    head, body = await asyncio.wait_for(streaming, 15)
    assert head.status == 200
    text = body.decode()
    assert text.startswith(prelude)
    small = framed.format('["y"]' if transport != "htmlfile?c=cb" else '[\\"y\\"]')
    large = framed.format(big if transport != "htmlfile?c=cb" else big.replace('"', '\\"'))
    assert small in text
    assert large in text
    assert text.index(small) < text.index(large)
    assert text.count("zzzz" * 1050) == 1


async def test_an_unknown_session_is_new_on_any_node(cluster: Cluster) -> None:
    for url in cluster.urls:
        unknown = f"{url}/sockjs/echo/000/{uuid.uuid4()}"
        head, _ = await fetch(unknown + "/xhr_send", "POST", body=b'["x"]')
        assert head.status == 404
        _, body = await fetch(unknown + "/xhr", "POST")
        assert body == b"o\n"


async def test_a_forged_forward_is_refused(cluster: Cluster) -> None:
    """A message to a node's channel naming a session that node does not hold is refused:
    a send is answered "unknown" and delivers nothing, a receive is answered "unknown"."""
    session = Alternating(cluster.urls, "/echo")
    assert await session.poll() == "o"
    session_id = session.bases[0].rsplit("/", 1)[1]
    client = aioredis.Redis.from_url(cluster.redis.url, decode_responses=True)
    pubsub = client.pubsub()

    async def forge(node: str, message: dict[str, Any]) -> dict[str, Any]:
        assert await client.publish(f"orbiter:node:{node}", orjson.dumps(message)) == 1
        async with asyncio.timeout(5):
            while True:
                got = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if got is not None:
                    answer: dict[str, Any] = orjson.loads(got["data"])
                    return answer

    try:
        owner = str(await client.get(f"orbiter:session:/sockjs/echo:{session_id}"))
        other = next(n for n in map(str, await client.hkeys("orbiter:nodes")) if n != owner)
        await pubsub.subscribe("orbiter:node:forger")
        unknown = str(uuid.uuid4())
        for number, (node, target) in enumerate(
            [(owner, unknown), (other, unknown), (other, session_id)], 1
        ):
            send = {"t": "send@/sockjs/echo", "from": "forger", "ask": number, "sid": target}
            answer = await forge(node, {**send, "messages": ["forged"]})
            assert answer == {"t": "reply", "re": number, "result": "unknown"}
            receive = {"t": "recv@/sockjs/echo", "from": "forger", "rid": number, "sid": target}
            answer = await forge(node, {**receive, "transport": "xhr", "callback": ""})
            assert answer == {"t": "out@/sockjs/echo", "rid": number, "unknown": True}
        # The real session got none of it.
        head, _ = await fetch(session.bases[1] + "/xhr_send", "POST", body=b'["real"]')
        assert head.status == 204
        assert await session.poll() == 'a["real"]'
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()
    assert any("refused" in node.log for node in cluster.nodes)


async def test_orbited_xhr_polls_of_a_key_alternating_nodes_get_each_event_once_in_order(
    cluster: Cluster,
) -> None:
    user = f"u{uuid.uuid4().hex[:8]}"
    key = f"{user}, 0, /chat"
    urls = [f"{base}/chat|{user},0,xhr" for base in cluster.urls]
    turn = 0

    async def poll() -> Any:
        nonlocal turn
        head, body = await fetch(urls[turn % 2], "GET")
        turn += 1
        assert head.status == 200, body
        assert body[:1] == b"(", body
        assert body[-1:] == b")", body
        return orjson.loads(body[1:-1])

    async with AsyncClient(cluster.urls[0]) as a, AsyncClient(cluster.urls[1]) as b:
        async with asyncio.timeout(20):
            held = asyncio.create_task(poll())  # the key's first poll: waits for an event
            await asyncio.sleep(0.3)
            await b.event(key, "e0")
            got = [await held]
            for i in range(1, 10):
                await (a, b)[i % 2].event(key, f"e{i}")
            while len(got) < 10:
                got.append(await poll())  # one event per poll, each on the other node
    assert got == [f"e{i}" for i in range(10)]


async def test_a_session_of_a_killed_node_starts_again_on_another() -> None:
    """Its directory entry outlives it (up to 60 s): the other node, finding nobody
    listening for the owner, takes the id over rather than wait or fail."""
    running = Cluster()
    try:
        session = Alternating(running.urls, "/echo")
        assert await session.poll() == "o"  # held by node 0
        assert await session.send("before") == 204  # relayed by node 1
        running.nodes[0].stop(signal.SIGKILL)
        other = session.bases[1]
        head, _ = await fetch(other + "/xhr_send", "POST", body=b'["lost"]')
        assert head.status == 404  # nobody holds it now: as on one node after a restart
        _, body = await fetch(other + "/xhr", "POST")
        assert body == b"o\n"  # a new session, here
        assert (await fetch(other + "/xhr_send", "POST", body=b'["after"]'))[0].status == 204
        _, body = await fetch(other + "/xhr", "POST")
        assert body == b'a["after"]\n'
    finally:
        running.stop()


async def _read_until(response: aiohttp.ClientResponse, marker: bytes) -> bytes:
    body = b""
    async with asyncio.timeout(10):
        while marker not in body:
            chunk = await response.content.readany()
            assert chunk, body
            body += chunk
    return body


async def test_an_orbited_iframe_reloaded_on_the_other_node_resumes_where_it_stopped(
    cluster: Cluster,
) -> None:
    user = f"i{uuid.uuid4().hex[:8]}"
    key = f"{user}, 0, /chat"
    first_url, second_url = (f"{base}/chat|{user},0,iframe" for base in cluster.urls)
    async with aiohttp.ClientSession() as http, AsyncClient(cluster.urls[1]) as api:
        async with http.get(first_url) as first:
            await _read_until(first, b"-->\n")
            await api.event(key, "before")
            await api.event(key, "a" * 3000)  # past orbited.response_limit: it reloads
            body = await _read_until(first, b"</html>")
        assert body.count(b"<script>c(") == 2
        await api.event(key, "sent while reloading")
        async with http.get(second_url) as second:  # the reload, on the other node
            body = await _read_until(second, b'c("sent while reloading");</script>')
    assert body.count(b"<script>c(") == 1  # that event, and none from before the reload


async def test_with_redis_down_a_local_session_goes_on_and_a_new_one_gets_503() -> None:
    running = Cluster()
    try:
        session = Alternating(running.urls, "/echo")
        assert await session.poll() == "o"
        owner = session.bases[0]
        running.redis.stop()
        # Held here: one dict lookup, no Redis.
        assert (await fetch(owner + "/xhr_send", "POST", body=b'["still"]'))[0].status == 204
        assert (await fetch(owner + "/xhr", "POST"))[1] == b'a["still"]\n'
        # Anything else needs the directory: a clear 503, not a session on a guess.
        head, body = await fetch(session.bases[1] + "/xhr_send", "POST", body=b'["x"]')
        assert head.status == 503, body
        head, body = await fetch(f"{running.urls[0]}/sockjs/echo/000/{uuid.uuid4()}/xhr", "POST")
        assert head.status == 503, body
        assert body == b"Session directory unavailable.\n"
    finally:
        running.stop()


async def test_a_session_alternating_nodes_on_a_redis_cluster(redis_cluster: RedisCluster) -> None:
    """The directory and the node channels work on a Redis Cluster engine too."""
    args = ("--engine", redis_cluster.url, "--sockjs-test-services")
    nodes = [RunningServer(args=args) for _ in range(2)]
    try:
        session = Alternating([node.url for node in nodes], "/echo")
        assert await session.poll() == "o"
        sent = [f"m{i}" for i in range(10)]
        async with asyncio.timeout(20):
            for i in range(0, len(sent), 2):  # sends and polls each on both nodes in turn
                assert await session.send(sent[i]) == 204
                assert await session.send(sent[i + 1]) == 204
                await session.poll()
            while len(session.messages()) < len(sent):
                await session.poll()
        assert session.messages() == sent
    finally:
        for node in nodes:
            node.stop()
