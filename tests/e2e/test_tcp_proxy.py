"""The TCP proxy at ``/tcp`` against a real ``orbiter serve`` and real TCP backends.

Every scenario ends with the documented close code, and the server holds
no more sockets afterwards than before (counted in /proc/PID/fd).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import aiohttp
import orjson
import pytest

from orbiter.ports import free_port
from orbiter.protocol.tcp_websockify import NATIVE_SUBPROTOCOL
from tests.support.relay import Relay
from tests.support.server import RunningServer
from tests.support.tcp_backends import (
    Echo,
    Firehose,
    Greeter,
    Stalled,
    tcp_sockets,
    wait_for_sockets,
)

#: The /tcp subprotocol of orbiter's framing (the open message first); none: websockify.
ORBITER_TCP = (NATIVE_SUBPROTOCOL,)

PORTS = {name: free_port() for name in ("echo", "greeter", "stalled", "firehose", "refused")}


@pytest.fixture(scope="module")
def blackhole() -> Iterator[int]:
    """A port whose accept queue is full, so further connects hang (the SYNs are dropped)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    for _ in range(3):
        sock = socket.socket()
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect(("127.0.0.1", port))
        fillers.append(sock)
    yield port
    for sock in fillers:
        sock.close()
    listener.close()


@pytest.fixture(scope="module")
def proxy_server(blackhole: int) -> Iterator[RunningServer]:
    rules = "".join(
        f'[[tcp.access]]\nto = "127.0.0.1:{port}"\n\n' for port in [*PORTS.values(), blackhole]
    )
    config = f"""
[session]
ping_interval = 1
pong_timeout = 1

[tcp]
connect_timeout = 1
idle_timeout = 3
max_per_ip = 4
max_per_session = 2

[[tcp.access]]
to = "localhost:{PORTS["echo"]}"
origin = "http://localhost:8123"

{rules}
"""
    srv = RunningServer(config)
    yield srv
    srv.stop()


def tcp_url(server: RunningServer, target: str = "", query: str = "") -> str:
    base = server.url.replace("http://", "ws://") + "/tcp"
    return base + (f"/{target}" if target else "") + (f"?{query}" if query else "")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def closing(ws: aiohttp.ClientWebSocketResponse, timeout: float = 10.0) -> tuple[int, str]:
    """Read until the server closes; the close code and reason."""
    async with asyncio.timeout(timeout):
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.CLOSE:
                return int(msg.data), str(msg.extra or "")
            if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return int(ws.close_code or 0), ""


async def opened(ws: aiohttp.ClientWebSocketResponse) -> dict[str, str]:
    msg = await ws.receive(timeout=10)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    return dict(msg.json())


async def test_allowed_echo_is_relayed_binary_safe(
    proxy_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    pid = proxy_server.process.pid
    before = tcp_sockets(pid)
    backend = await Echo(PORTS["echo"]).start()
    try:
        ws = await http.ws_connect(
            tcp_url(proxy_server, f"127.0.0.1:{PORTS['echo']}"), protocols=ORBITER_TCP
        )
        assert await opened(ws) == {"type": "open", "target": f"127.0.0.1:{PORTS['echo']}"}
        payload = bytes(range(256)) * 200 + b"\x00\r\n\xff"  # under max_message_size
        await ws.send_bytes(payload)
        got = bytearray()
        async with asyncio.timeout(10):
            while len(got) < len(payload):
                msg = await ws.receive()
                assert msg.type is aiohttp.WSMsgType.BINARY
                got += msg.data
        assert bytes(got) == payload
        assert bytes(backend.received) == payload
        await ws.close()
        await asyncio.wait_for(backend.closed.wait(), 10)
    finally:
        await backend.stop()
    assert wait_for_sockets(pid, before) <= before


@pytest.mark.parametrize(
    ("target", "code", "reason_part"),
    [
        ("127.0.0.1:1", 4403, "not allowed"),  # no rule
        ("localhost:{echo}", 4403, "not allowed"),  # rule needs Origin http://localhost:8123
        ("127.0.0.1:{refused}", 4502, "cannot connect"),
        ("127.0.0.1:{blackhole}", 4504, "did not accept"),
        ("not a target", 4400, ""),
        ("127.0.0.1:99999", 4400, "port"),
        ("*:{echo}", 4400, "wildcard"),
    ],
)
async def test_refusals_have_distinct_codes(
    proxy_server: RunningServer,
    http: aiohttp.ClientSession,
    blackhole: int,
    target: str,
    code: int,
    reason_part: str,
) -> None:
    pid = proxy_server.process.pid
    before = tcp_sockets(pid)
    target = target.format(**PORTS, blackhole=blackhole)
    ws = await http.ws_connect(
        tcp_url(proxy_server, query=f"target={target}"), protocols=ORBITER_TCP
    )
    got_code, reason = await closing(ws)
    assert (got_code, reason_part in reason) == (code, True), reason
    assert wait_for_sockets(pid, before) <= before


async def test_origin_restricted_rule_allows_that_origin(
    proxy_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    backend = await Echo(PORTS["echo"]).start()
    try:
        url = tcp_url(proxy_server, query=f"host=localhost&port={PORTS['echo']}")
        ws = await http.ws_connect(url, origin="http://localhost:8123", protocols=ORBITER_TCP)
        assert (await opened(ws))["type"] == "open"
        ws_bad = await http.ws_connect(url, origin="http://127.0.0.1:8124", protocols=ORBITER_TCP)
        assert (await closing(ws_bad))[0] == 4403
        await ws.close()
    finally:
        await backend.stop()


async def test_backend_that_closes_delivers_then_closes_1000(
    proxy_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    pid = proxy_server.process.pid
    before = tcp_sockets(pid)
    backend = await Greeter(PORTS["greeter"]).start()
    try:
        ws = await http.ws_connect(
            tcp_url(proxy_server, f"127.0.0.1:{PORTS['greeter']}"), protocols=ORBITER_TCP
        )
        await opened(ws)
        msg = await ws.receive(timeout=10)
        assert msg.data == Greeter.greeting
        assert await closing(ws) == (1000, "the backend closed the connection")
    finally:
        await backend.stop()
    assert wait_for_sockets(pid, before) <= before


async def test_idle_connection_is_closed_4408(
    proxy_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    backend = await Echo(PORTS["echo"]).start()
    try:
        ws = await http.ws_connect(
            tcp_url(proxy_server, f"127.0.0.1:{PORTS['echo']}"), protocols=ORBITER_TCP
        )
        await opened(ws)
        code, reason = await closing(ws, timeout=15)
        assert code == 4408, reason
        await asyncio.wait_for(backend.closed.wait(), 10)
    finally:
        await backend.stop()


async def test_per_ip_limit_4429(proxy_server: RunningServer, http: aiohttp.ClientSession) -> None:
    pid = proxy_server.process.pid
    before = tcp_sockets(pid)
    backend = await Echo(PORTS["echo"]).start()
    socks = []
    try:
        code, reason = 0, ""
        for _ in range(5):  # max_per_ip = 4 (a previous test's may still be closing)
            ws = await http.ws_connect(
                tcp_url(proxy_server, f"127.0.0.1:{PORTS['echo']}"), protocols=ORBITER_TCP
            )
            msg = await ws.receive(timeout=10)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                code, reason = int(msg.data), str(msg.extra)
                break
            socks.append(ws)
        assert code == 4429, reason
        assert 1 <= len(socks) <= 4
        await socks.pop().close()
        for _ in range(50):  # bounded: the freed slot comes back once the server has closed
            again = await http.ws_connect(
                tcp_url(proxy_server, f"127.0.0.1:{PORTS['echo']}"), protocols=ORBITER_TCP
            )
            msg = await again.receive(timeout=10)
            if msg.type is aiohttp.WSMsgType.TEXT:
                socks.append(again)
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the closed connection's slot was never given back")
    finally:
        for ws in socks:
            await ws.close()
        await backend.stop()
    assert wait_for_sockets(pid, before) <= before


async def test_slow_backend_pauses_the_browser_without_loss(
    proxy_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    backend = await Stalled(PORTS["stalled"]).start()
    try:
        ws = await http.ws_connect(
            tcp_url(proxy_server, f"127.0.0.1:{PORTS['stalled']}"), protocols=ORBITER_TCP
        )
        await opened(ws)
        chunk = b"s" * 60000
        sent = 0

        async def flood() -> None:
            nonlocal sent
            for _ in range(2000):  # 128 MiB at most: far beyond every buffer on the way
                await ws.send_bytes(chunk)
                sent += len(chunk)

        flooding = asyncio.create_task(flood())
        await asyncio.sleep(1.5)
        assert not flooding.done(), "the browser side was never paused"
        stalled_at = sent
        assert stalled_at < 64 * 1024 * 1024
        backend.go.set()
        await asyncio.wait_for(flooding, 60)
        for _ in range(600):  # bounded: 30 s
            if len(backend.received) >= sent:
                break
            await asyncio.sleep(0.05)
        assert len(backend.received) == sent == 2000 * 60000
        await ws.close()
    finally:
        await backend.stop()


async def test_slow_browser_pauses_the_backend_without_loss(
    proxy_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    backend = await Firehose(PORTS["firehose"]).start()
    try:
        ws = await http.ws_connect(
            tcp_url(proxy_server, f"127.0.0.1:{PORTS['firehose']}"),
            max_msg_size=0,
            protocols=ORBITER_TCP,
        )
        await opened(ws)
        await asyncio.sleep(1.5)  # the browser reads nothing
        assert backend.written < Firehose.total // 2, "the backend was never paused"
        got = 0
        async with asyncio.timeout(60):
            while got < Firehose.total:
                msg = await ws.receive()
                assert msg.type is aiohttp.WSMsgType.BINARY, msg
                got += len(msg.data)
        assert got == Firehose.total
        assert await closing(ws) == (1000, "the backend closed the connection")
    finally:
        await backend.stop()


async def test_browser_that_vanishes_frees_the_backend(
    proxy_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    pid = proxy_server.process.pid
    host, port = proxy_server.url.removeprefix("http://").rsplit(":", 1)
    relay = Relay(host, int(port))
    backend = await Echo(PORTS["echo"]).start()
    try:
        before = tcp_sockets(pid)
        url = f"ws://127.0.0.1:{relay.port}/tcp/127.0.0.1:{PORTS['echo']}"
        ws = await http.ws_connect(url, autoping=False, protocols=ORBITER_TCP)
        await opened(ws)
        relay.freeze()  # the network vanishes without a FIN: pings go unanswered
        await asyncio.wait_for(backend.closed.wait(), 15)
        assert wait_for_sockets(pid, before) <= before
    finally:
        relay.close()
        await backend.stop()


async def test_websockify_base64_and_binary_subprotocols(
    proxy_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    backend = await Echo(PORTS["echo"]).start()
    try:
        url = tcp_url(proxy_server, query=f"token=127.0.0.1:{PORTS['echo']}")
        ws = await http.ws_connect(url, protocols=("base64",))
        assert ws.protocol == "base64"
        await ws.send_str(base64.b64encode(b"\x00\x01hi\xff").decode())
        msg = await ws.receive(timeout=10)
        assert msg.type is aiohttp.WSMsgType.TEXT
        assert base64.b64decode(msg.data) == b"\x00\x01hi\xff"
        await ws.send_str("not base64!")
        assert (await closing(ws))[0] == 4400

        ws = await http.ws_connect(url, protocols=("binary",))
        assert ws.protocol == "binary"
        await ws.send_bytes(b"\x00raw")  # no open message in websockify modes
        msg = await ws.receive(timeout=10)
        assert msg.type is aiohttp.WSMsgType.BINARY
        assert msg.data == b"\x00raw"
        await ws.close()
    finally:
        await backend.stop()


async def test_without_a_subprotocol_the_relay_is_plain_websockify(
    proxy_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    """Issue 18: today's noVNC offers no subprotocol and takes every frame as the backend's
    bytes, so no JSON open frame may come first; orbiter.js asks for ``orbiter.tcp``."""
    backend = await Greeter(PORTS["greeter"]).start()
    try:
        url = tcp_url(proxy_server, f"127.0.0.1:{PORTS['greeter']}")
        ws = await http.ws_connect(url)
        assert ws.protocol is None
        msg = await ws.receive(timeout=10)
        assert msg.type is aiohttp.WSMsgType.BINARY, msg
        assert msg.data == Greeter.greeting
        await ws.close()
        ws = await http.ws_connect(url, protocols=("binary", NATIVE_SUBPROTOCOL))
        assert ws.protocol == NATIVE_SUBPROTOCOL
        assert (await opened(ws))["type"] == "open"
        await ws.close()
    finally:
        await backend.stop()
    echo = await Echo(PORTS["echo"]).start()
    try:
        ws = await http.ws_connect(tcp_url(proxy_server, f"127.0.0.1:{PORTS['echo']}"))
        await ws.send_bytes(b"\x00raw\xff")
        msg = await ws.receive(timeout=10)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.BINARY, b"\x00raw\xff")
        await ws.close()
    finally:
        await echo.stop()


async def _sockjs_frame(ws: aiohttp.ClientWebSocketResponse) -> str:
    msg = await ws.receive(timeout=10)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    return str(msg.data)


async def test_sockjs_carried_mode(
    proxy_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    """The SockJS framing (here over its WebSocket transport): connect message, base64."""
    pid = proxy_server.process.pid
    before = tcp_sockets(pid)
    backend = await Echo(PORTS["echo"]).start()
    base = proxy_server.url.replace("http://", "ws://") + "/tcp/sockjs/000"
    try:
        ws = await http.ws_connect(f"{base}/echo1/websocket")
        assert await _sockjs_frame(ws) == "o"
        connect = {"type": "connect", "host": "127.0.0.1", "port": PORTS["echo"]}
        await ws.send_str(orjson.dumps([orjson.dumps(connect).decode()]).decode())
        opened_frame = await _sockjs_frame(ws)
        assert orjson.loads(orjson.loads(opened_frame[1:])[0])["type"] == "open"
        payload = bytes(range(256))
        await ws.send_str(orjson.dumps([base64.b64encode(payload).decode()]).decode())
        echoed = orjson.loads((await _sockjs_frame(ws))[1:])
        assert base64.b64decode("".join(echoed)) == payload
        await ws.close()
        await asyncio.wait_for(backend.closed.wait(), 10)

        ws = await http.ws_connect(f"{base}/denied1/websocket")
        assert await _sockjs_frame(ws) == "o"
        connect = {"type": "connect", "host": "127.0.0.1", "port": 1}
        await ws.send_str(orjson.dumps([orjson.dumps(connect).decode()]).decode())
        close = await _sockjs_frame(ws)
        assert orjson.loads(close[1:])[0] == 4403
        await ws.close()
    finally:
        await backend.stop()
    assert wait_for_sockets(pid, before) <= before


async def test_sockjs_slow_browser_pauses_the_backend(
    proxy_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    """Over xhr-polling: a client that stops polling stops orbiter reading the backend."""
    backend = await Firehose(PORTS["firehose"]).start()
    base = proxy_server.url + "/tcp/sockjs/000/slow1"
    try:
        async with http.post(base + "/xhr") as r:
            assert await r.text() == "o\n"
        connect = {"type": "connect", "host": "127.0.0.1", "port": PORTS["firehose"]}
        body = orjson.dumps([orjson.dumps(connect).decode()])
        async with http.post(base + "/xhr_send", data=body) as r:
            assert r.status == 204
        await asyncio.sleep(1.5)  # nobody polls
        assert backend.written < Firehose.total // 2, "the backend was never paused"
        got, opened_seen = 0, False
        for _ in range(2000):  # bounded; each poll takes what is queued
            async with http.post(base + "/xhr") as r:
                frame = (await r.text()).strip()
            if frame.startswith("c"):
                assert orjson.loads(frame[1:])[0] == 1000
                break
            if frame.startswith("a"):
                for message in orjson.loads(frame[1:]):
                    if message.startswith("{"):
                        opened_seen = True
                    else:
                        got += len(base64.b64decode(message))
        assert opened_seen
        assert got == Firehose.total
    finally:
        await backend.stop()


async def test_per_session_limit_4429(
    proxy_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    """One page (orbiter.js's ?session= id) gets max_per_session; another page still gets in."""
    backend = await Echo(PORTS["echo"]).start()
    socks = []
    try:
        for page, expected in (
            ("pageA", "open"),
            ("pageA", "open"),
            ("pageA", 4429),
            ("pageB", "open"),
        ):
            url = tcp_url(proxy_server, f"127.0.0.1:{PORTS['echo']}", query=f"session={page}")
            for _ in range(50):  # bounded: a previous test's connections may still be closing
                ws = await http.ws_connect(url, protocols=ORBITER_TCP)
                msg = await ws.receive(timeout=10)
                got = msg.json()["type"] if msg.type is aiohttp.WSMsgType.TEXT else int(msg.data)
                if got == expected or expected == 4429:
                    break
                await asyncio.sleep(0.1)
            assert got == expected, (page, msg.extra)
            if got == "open":
                socks.append(ws)
        bad = await http.ws_connect(
            tcp_url(proxy_server, f"127.0.0.1:{PORTS['echo']}", query="session=no%20spaces"),
            protocols=ORBITER_TCP,
        )
        assert (await closing(bad))[0] == 4400
    finally:
        for ws in socks:
            await ws.close()
        await backend.stop()


async def test_long_non_ascii_reason_stays_valid_utf8(
    proxy_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(
        tcp_url(proxy_server, query="host=a" + "é" * 70 + "&port=1"), protocols=ORBITER_TCP
    )
    code, reason = await closing(ws)
    assert code == 4400
    assert reason.startswith("host ")  # decoded: valid UTF-8, cut on a character boundary


async def test_shutdown_closes_relays_with_1001(start_server, http: aiohttp.ClientSession) -> None:
    port = free_port()
    backend = await Echo(port).start()
    try:
        server = start_server(f'[[tcp.access]]\nto = "127.0.0.1:{port}"\n')
        ws = await http.ws_connect(tcp_url(server, f"127.0.0.1:{port}"), protocols=ORBITER_TCP)
        await opened(ws)
        stopping = asyncio.create_task(asyncio.to_thread(server.stop))
        code, reason = await closing(ws, timeout=15)
        assert (code, reason) == (1001, "server shutting down")
        await asyncio.wait_for(backend.closed.wait(), 10)
        assert await stopping == 0
    finally:
        await backend.stop()


async def test_browser_message_over_the_limit_ends_the_relay_as_too_big(
    proxy_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    backend = await Echo(PORTS["echo"]).start()
    try:
        ws = await http.ws_connect(
            tcp_url(proxy_server, f"127.0.0.1:{PORTS['echo']}"), protocols=ORBITER_TCP
        )
        await opened(ws)
        await ws.send_bytes(b"x" * (1_048_576 + 1))  # over limits.max_message_size (1 MiB)
        code, _ = await closing(ws)
        assert code == 1009
        # The relay knows why it ended (not "the browser closed the connection").
        assert proxy_server.wait_for_log(f"127.0.0.1:{PORTS['echo']} ended: message too big")
        await asyncio.wait_for(backend.closed.wait(), 10)
    finally:
        await backend.stop()
