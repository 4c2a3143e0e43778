"""Hostile native WebSocket clients against a real server: bounded memory, CPU and answers.

- A flood of frames is read at ``limits.frame_rate`` frames a second, the
  rest waits (TCP pushes back on the client): nothing is lost, and the
  flood takes no time from other clients.
- A ping flood from a client that never reads: RFC 6455 pings and the
  native ``{"op": "ping"}`` both make the server write on its own; what it
  holds unsent stays within ``limits.outgoing_buffer``, the client is cut as
  a slow consumer, and the memory is back once it is gone.
- Bytes that are not ASCII in the handshake: ``400`` naming the header (or
  aiohttp's ``400`` for the request target), never a traceback.
- A large message trickled in small TCP segments costs CPU linear in its
  size, not in its size times the number of segments.
- aiohttp's WebSocket routes (``/stomp``, ``/tcp``, SockJS's ``websocket``
  URLs) take frames (pings and messages) at ``limits.frame_rate`` too, so a
  flood on them takes no time from others either.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType

from orbiter.ports import free_port
from tests.support.server import RunningServer
from tests.support.tcp_backends import Echo

FLOOD_BUFFER = 65_536

FLOOD_CONFIG = f"""
[session]
pong_timeout = 1

[limits]
outgoing_buffer = {FLOOD_BUFFER}
frame_rate = 100000000  # these tests are of the write bound, not of the read rate
"""

#: A ping with the largest payload a control frame may carry (so a pong of 127 bytes).
PING = bytes((0x89, 0x80 | 125)) + b"\x00\x00\x00\x00" + b"p" * 125


def masked(opcode: int, payload: bytes) -> bytes:
    """A final frame as a client sends it (masked with a zero key, so bytes as they are)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + b"\x00\x00\x00\x00" + payload


def address(srv: RunningServer) -> tuple[str, int]:
    host, port = srv.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def handshake_head(srv: RunningServer, *, target: bytes = b"", extra: bytes = b"") -> bytes:
    host, port = address(srv)
    key = base64.b64encode(os.urandom(16))
    return (
        b"GET /connection/websocket" + target + b" HTTP/1.1\r\n"
        b"Host: " + f"{host}:{port}".encode() + b"\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\n" + extra + b"\r\n"
    )


def opened(srv: RunningServer, *, rcvbuf: int = 0, target: bytes = b"") -> socket.socket:
    """A raw socket past a 101 (with a small receive buffer if ``rcvbuf``)."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(5)
    sock.connect(address(srv))
    sock.sendall(handshake_head(srv, target=target))
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)  # byte by byte: nothing after the head is read
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def answer(srv: RunningServer, head: bytes) -> bytes:
    """What the server answers ``head`` with: one response, or what came in 3 s."""
    with socket.create_connection(address(srv), timeout=3) as sock:
        sock.sendall(head)
        data = b""
        try:
            while (chunk := sock.recv(65536)) and not whole(data := data + chunk):
                pass
        except (TimeoutError, ConnectionResetError):
            pass
        return data


def whole(answer: bytes) -> bool:
    """Is ``answer`` a whole response head (of a 101), or head and ``Content-Length`` body?"""
    head, found, body = answer.partition(b"\r\n\r\n")
    if not found:
        return False
    length = re.search(rb"\r\ncontent-length: *(\d+)", head, re.IGNORECASE)
    return length is None or len(body) >= int(length.group(1))


class PeakRss:
    """Samples the server's RSS every 20 ms while in its ``with`` block."""

    def __init__(self, srv: RunningServer) -> None:
        self._srv = srv
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, self._srv.rss_bytes())

    def __enter__(self) -> PeakRss:
        self.peak = self._srv.rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self._srv.rss_bytes())


def cpu_seconds(pid: int) -> float:
    """The user + system CPU time of process ``pid`` (``/proc/<pid>/stat``)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def counters(srv: RunningServer) -> dict[str, int]:
    """The node's counters, from ``GET /api/stats`` (open: no API key)."""
    with socket.create_connection(address(srv), timeout=5) as sock:
        host, port = address(srv)
        sock.sendall(
            f"GET /api/stats HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    body = orjson.loads(data.split(b"\r\n\r\n", 1)[1])
    result: dict[str, int] = body["counters"]
    return result


def flood(sock: socket.socket, data: bytes, seconds: float, *, gap: float = 0.0) -> bool:
    """Send ``data`` again and again for ``seconds``, never reading; True if the server cut us.

    With ``gap``, sends are that many seconds apart (spun, not slept: a sleep
    is ten times longer), so that the server reads each on its own.
    """
    sock.settimeout(5)
    deadline = time.monotonic() + seconds
    due = time.perf_counter()
    try:
        while time.monotonic() < deadline:
            sock.sendall(data)
            if gap:
                due += gap
                while time.perf_counter() < due:
                    pass
    except (ConnectionResetError, BrokenPipeError):
        return True
    finally:
        sock.close()
    return False


def back_to(srv: RunningServer, baseline: int, slack: int, timeout: float = 5.0) -> int:
    """The server's RSS once within ``slack`` of ``baseline`` (or at ``timeout``)."""
    deadline = time.monotonic() + timeout
    while (rss := srv.rss_bytes()) - baseline >= slack and time.monotonic() < deadline:
        time.sleep(0.1)
    return rss


@pytest.fixture
def flooded(start_server: Callable[..., RunningServer]) -> RunningServer:
    srv = start_server(FLOOD_CONFIG)
    opened(srv).close()  # one connection through, so that the baseline has what any has
    time.sleep(0.3)
    return srv


def test_a_ping_flood_from_a_client_that_never_reads_holds_a_pong_per_read_at_most(
    flooded: RunningServer,
) -> None:
    srv = flooded
    baseline = srv.rss_bytes()
    with PeakRss(srv) as rss:
        # 500 pings a send, as fast as the server reads them: a pong for each
        # (the server's behaviour before) queued 100 MB and more within seconds.
        flood(opened(srv), PING * 500, 3.0)
    assert rss.peak - baseline < 20_000_000, (baseline, rss.peak)
    assert back_to(srv, baseline, 5_000_000) - baseline < 5_000_000
    opened(srv).close()  # others are served as before
    assert "Traceback" not in srv.log


def test_a_client_that_never_reads_its_pongs_is_cut_at_the_outgoing_buffer(
    flooded: RunningServer,
) -> None:
    srv = flooded
    # One ping per TCP segment, each read on its own: a pong each, and the client's
    # receive window (64 KiB) and the server's send buffer full, the server's own.
    assert flood(opened(srv, rcvbuf=65536), PING, 10.0, gap=0.00002)
    # What the server held unsent when it cut: over the limit by less than one pong.
    found = re.findall(r"(\d+) bytes unsent, over limits\.outgoing_buffer", srv.log)
    held = [int(n) for n in found]
    assert len(held) == 1
    assert FLOOD_BUFFER < held[0] <= FLOOD_BUFFER + 127, held
    assert "disconnected: outgoing buffer full" in srv.log
    assert counters(srv)["limit_outgoing_buffer"] == 1
    assert "Traceback" not in srv.log


def test_a_native_ping_flood_from_a_client_that_never_reads_is_cut_as_a_slow_consumer(
    flooded: RunningServer,
) -> None:
    srv = flooded
    baseline = srv.rss_bytes()
    commands = b"\n".join(b'{"id":%d,"op":"ping"}' % i for i in range(1, 101))
    with PeakRss(srv) as rss:
        assert flood(opened(srv, rcvbuf=65536), masked(0x1, commands), 10.0)
    assert "disconnected: outgoing buffer full" in srv.log
    assert counters(srv)["limit_outgoing_buffer"] == 1
    assert rss.peak - baseline < 20_000_000, (baseline, rss.peak)
    assert back_to(srv, baseline, 5_000_000) - baseline < 5_000_000
    assert "Traceback" not in srv.log


NON_ASCII_HEADERS = [
    ("Sec-WebSocket-Key", None),
    ("Origin", b"Origin: http://127.0.0.1\xff\r\n"),
    ("Sec-WebSocket-Protocol", b"Sec-WebSocket-Protocol: chat\xe9\r\n"),
    ("Sec-WebSocket-Extensions", b"Sec-WebSocket-Extensions: x-\xc3\xa9\r\n"),
    ("Authorization", b"Authorization: Bearer ey\xff\xfe\r\n"),
    ("X-Forwarded-For", b"X-Forwarded-For: 10.0.0.1\xa0\r\n"),
]


def hostile_head(srv: RunningServer, extra: bytes | None) -> bytes:
    """A handshake with ``extra`` header lines; None: with a key whose first byte is 0xff."""
    head = handshake_head(srv, extra=extra or b"")
    if extra is None:
        at = head.index(b"Sec-WebSocket-Key: ") + len(b"Sec-WebSocket-Key: ")
        head = head[:at] + b"\xff" + head[at + 1 :]
    return head


@pytest.mark.parametrize(("header", "extra"), NON_ASCII_HEADERS)
def test_a_non_ascii_byte_in_a_handshake_header_is_a_400_naming_it(
    server: RunningServer, header: str, extra: bytes | None
) -> None:
    reply = answer(server, hostile_head(server, extra))
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n"), reply
    body = orjson.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["message"] == f"the {header} header holds a byte that is not ASCII"
    assert server.wait_for_log(f"the {header} header holds a byte that is not ASCII (400)")


def test_a_non_ascii_host_is_refused_with_a_400_naming_it(server: RunningServer) -> None:
    head = handshake_head(server).replace(b"Host: 127.0.0.1", b"Host: 127.0.0.\xb9")
    reply = answer(server, head)
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n"), reply
    assert b"Host" in reply.split(b"\r\n\r\n", 1)[1]


def test_a_handshake_left_to_aiohttp_with_a_non_ascii_key_is_a_400_too(
    server: RunningServer,
) -> None:
    # An absolute-form target is not read below aiohttp; aiohttp's own check of the
    # key fails on such a byte (a 500), so orbiter's route looks first.
    host, port = address(server)
    head = hostile_head(server, None).replace(
        b"GET /connection/websocket", f"GET http://{host}:{port}/connection/websocket".encode()
    )
    reply = answer(server, head)
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n"), reply
    assert b"\r\nServer: Python" in reply  # aiohttp's answer
    body = orjson.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["message"] == "the Sec-WebSocket-Key header holds a byte that is not ASCII"
    assert "Traceback" not in server.log


@pytest.mark.parametrize(
    "path", [b"/stomp", b"/sockjs/websocket", b"/sockjs/000/abcd/websocket", b"/tcp"]
)
def test_aiohttps_websocket_routes_answer_a_non_ascii_key_with_a_400(
    server: RunningServer, path: bytes
) -> None:
    head = hostile_head(server, None).replace(b"GET /connection/websocket", b"GET " + path)
    reply = answer(server, head)
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n"), reply
    body = orjson.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["message"] == "the Sec-WebSocket-Key header holds a byte that is not ASCII"
    assert "Traceback" not in server.log


@pytest.mark.parametrize("target", [b"\xff", b"?token=\xff\xfe", b"?x=1&token=a\x80b"])
def test_a_non_ascii_byte_in_the_target_is_a_400(server: RunningServer, target: bytes) -> None:
    reply = answer(server, handshake_head(server, target=target))
    assert reply.startswith(b"HTTP/1.0 400 Bad Request\r\n"), reply
    assert b"Invalid char in url" in reply


def test_undecodable_handshakes_leave_no_traceback_and_the_server_serves_on(
    server: RunningServer,
) -> None:
    for header, extra in NON_ASCII_HEADERS:
        assert answer(server, hostile_head(server, extra)).startswith(b"HTTP/1.1 400"), header
    answer(server, handshake_head(server, target=b"?token=%ff%fe"))  # a token, not UTF-8
    opened(server).close()
    assert "Traceback" not in server.log
    assert "Fatal error" not in server.log


def test_a_token_that_is_not_utf8_is_refused_as_a_bad_token(
    start_server: Callable[..., RunningServer],
) -> None:
    srv = start_server('[auth]\nsecret = "s3cret-s3cret-s3cret-s3cret-s3cret"\n')
    for target in (b"?token=%ff%fe.%80", b"?token=ey%C0%AF.e30.x", b"?token=%ed%a0%80"):
        sock = opened(srv, target=target)
        sock.sendall(masked(0x1, b'{"id":1,"op":"connect"}'))
        reply = b""
        while b"\x88" not in reply:  # the refusal, then the close frame
            reply += sock.recv(4096)
        sock.close()
        assert b'"code":101,"message":"the connection token is not valid' in reply, reply
    assert "Traceback" not in srv.log


def trickle_cpu(srv: RunningServer, message: bytes, segment: int, pace: float) -> float:
    """The server's CPU seconds to take ``message`` in ``segment``-byte TCP segments.

    A native ``ping`` padded with spaces, so the server answers once it has
    it all. ``pace`` seconds between segments keeps them apart (one read each).
    """
    frame = masked(0x1, message)
    sock = opened(srv)
    before = cpu_seconds(srv.process.pid)
    for at in range(0, len(frame), segment):
        sock.send(frame[at : at + segment])
        if pace:
            time.sleep(pace)
    sock.settimeout(10)
    reply = sock.recv(4096)
    spent = cpu_seconds(srv.process.pid) - before
    sock.close()
    assert reply.startswith(b"\x81"), reply
    assert b'"result":{}' in reply, reply
    return spent


def test_a_large_message_trickled_in_small_segments_costs_cpu_linear_in_its_size(
    start_server: Callable[..., RunningServer],
) -> None:
    srv = start_server("[limits]\nmax_message_size = 8388608\n")
    message = b'{"id":1,"op":"ping"}'.ljust(8_000_000)
    # 4 KiB segments 1 ms apart, each read on its own: joined to what came before at
    # each read, the message was copied once per segment (about 8 GB in all), which
    # took 0.6 to 1.8 s of CPU here; gathered once, it takes about 0.1 s. (At the
    # default limit, 64 KiB sent a byte per segment costs what 65,000 reads cost in
    # the event loop and the kernel whichever way it is gathered: the copying shows
    # only at a size like this one.)
    spent = trickle_cpu(srv, message, 4096, 0.001)
    assert spent < 0.4, spent


async def test_frames_past_frame_rate_wait_for_the_next_second_and_lose_nothing(
    start_server: Callable[..., RunningServer],
) -> None:
    """300 commands at once, 100 frames a second allowed: all answered, over two seconds."""
    srv = start_server("[limits]\nframe_rate = 100\n")
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(srv.ws_url)
        await ws.send_str('{"id": 1000, "op": "connect"}')
        assert "result" in orjson.loads((await ws.receive(timeout=5)).data)
        # The server counts frames per second of the (system-wide) monotonic clock:
        # start just after one begins, so the three hundred span two boundaries.
        await asyncio.sleep(1.05 - time.monotonic() % 1.0)
        started = time.monotonic()
        for i in range(1, 301):
            await ws.send_str(f'{{"id": {i}, "op": "ping"}}')
        answered: list[int] = []
        while len(answered) < 300:
            message = await ws.receive(timeout=5)
            answered += [orjson.loads(line)["id"] for line in message.data.split("\n")]
        took = time.monotonic() - started
        await ws.close()
    assert answered == list(range(1, 301))
    assert 1.8 <= took <= 3.5, took  # 100 now, 100 a second later, 100 a second after
    assert counters(srv)["limit_frame_rate"] >= 2


def test_a_ping_flood_is_read_at_frame_rate_and_takes_no_time_from_others(
    start_server: Callable[..., RunningServer],
) -> None:
    srv = start_server()
    before = cpu_seconds(srv.process.pid)
    attacker = opened(srv)
    attacker.settimeout(3)
    sent = 0
    with contextlib.suppress(TimeoutError):  # the server stops reading: our sends block
        while sent < 200_000_000:
            sent += attacker.send(PING * 500)
    assert sent < 50_000_000  # read at the frame rate, the flood is held back by TCP
    bystander = opened(srv)  # served as before, while the attacker still holds its socket
    bystander.close()
    attacker.close()
    assert cpu_seconds(srv.process.pid) - before < 1.0
    assert counters(srv)["limit_frame_rate"] >= 1


# ------------------------------------------------- aiohttp's WebSocket routes: limits.frame_rate

#: The WebSocket routes aiohttp serves; ``{echo}``: the port of an echo backend /tcp may reach.
AIOHTTP_ROUTES = [
    "/stomp",
    "/sockjs/websocket",
    "/sockjs/000/rated/websocket",
    "/stomp/sockjs/000/rated/websocket",
    "/tcp/127.0.0.1:{echo}",
]


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    backend = await Echo(free_port()).start()
    yield backend.port
    await backend.stop()


def rated_server(start: Callable[..., RunningServer], echo: int, frame_rate: int) -> RunningServer:
    return start(
        f'[limits]\nframe_rate = {frame_rate}\n\n[[tcp.access]]\nto = "127.0.0.1:{echo}"\n'
    )


def ws_route(srv: RunningServer, route: str, echo: int) -> str:
    return srv.url.replace("http://", "ws://") + route.format(echo=echo)


async def answered_at(ws: aiohttp.ClientWebSocketResponse, count: int, kind: str) -> list[float]:
    """When each of ``count`` pongs (or native replies, ``kind="reply"``) came."""
    times: list[float] = []
    while len(times) < count:
        msg = await ws.receive(timeout=5)
        assert msg.type not in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR), msg
        if kind == "pong" and msg.type is WSMsgType.PONG:
            times.append(time.monotonic())
        elif kind == "reply" and msg.type is WSMsgType.TEXT:
            times += [time.monotonic() for line in msg.data.split("\n") if '"id"' in line]
    return times


@pytest.mark.parametrize("route", AIOHTTP_ROUTES)
async def test_aiohttps_websocket_routes_take_pings_at_frame_rate(
    start_server: Callable[..., RunningServer], echo_port: int, route: str
) -> None:
    """300 pings at once, 100 frames a second allowed: 100 pongs in the first second
    (not 101, nor 200), all 300 over two more."""
    srv = rated_server(start_server, echo_port, 100)
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(ws_route(srv, route, echo_port), autoping=False)
        # Counted per second of the (system-wide) monotonic clock: start just after one begins.
        await asyncio.sleep(1.05 - time.monotonic() % 1.0)
        started = time.monotonic()
        for i in range(300):
            await ws.ping(b"%d" % i)
        times = await answered_at(ws, 300, "pong")
        await ws.close()
    first_second = sum(t < int(started) + 1 for t in times)
    assert first_second == 100, (first_second, [round(t - started, 2) for t in times[95:105]])
    assert 1.8 <= times[-1] - started <= 3.5, times[-1] - started
    assert counters(srv)["limit_frame_rate"] >= 2
    assert "Traceback" not in srv.log


async def test_commands_over_sockjs_websocket_are_taken_at_frame_rate(
    start_server: Callable[..., RunningServer], echo_port: int
) -> None:
    """Data frames count as pings do: 300 native commands, 100 answered in the first second."""
    srv = rated_server(start_server, echo_port, 100)
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(ws_route(srv, "/sockjs/websocket", echo_port))
        await ws.send_str('{"id": 1000, "op": "connect"}')
        assert await answered_at(ws, 1, "reply")
        await asyncio.sleep(1.05 - time.monotonic() % 1.0)
        started = time.monotonic()
        for i in range(1, 301):
            await ws.send_str(f'{{"id": {i}, "op": "ping"}}')
        times = await answered_at(ws, 300, "reply")
        await ws.close()
    assert sum(t < int(started) + 1 for t in times) == 100
    assert 1.8 <= times[-1] - started <= 3.5, times[-1] - started


def opened_at(srv: RunningServer, path: str) -> socket.socket:
    """A raw socket past the 101 of a WebSocket handshake for ``path``."""
    sock = socket.create_connection(address(srv), timeout=5)
    sock.sendall(handshake_head(srv).replace(b"GET /connection/websocket", b"GET " + path.encode()))
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def drain(sock: socket.socket) -> threading.Thread:
    """Read and drop everything ``sock`` receives (pongs), in a thread, until it closes."""

    def run() -> None:
        with contextlib.suppress(OSError):
            while sock.recv(1 << 20):
                pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


#: Native pings as SockJS sends them: raw (a message a frame) and framed (a JSON array).
COMMANDS = {
    "/sockjs/websocket": masked(0x1, b'{"id":1,"op":"ping"}'),
    "/sockjs/000/commands/websocket": masked(0x1, b'["{\\"id\\":1,\\"op\\":\\"ping\\"}"]'),
}
FLOODS = [(route, PING) for route in AIOHTTP_ROUTES] + list(COMMANDS.items())


@pytest.mark.parametrize(("route", "frame"), FLOODS, ids=[f"{r}-{f[:1].hex()}" for r, f in FLOODS])
def test_a_flood_on_aiohttps_routes_takes_no_time_from_others(
    start_server: Callable[..., RunningServer], echo_port: int, route: str, frame: bytes
) -> None:
    """A client that sends pings (or native commands) as fast as the socket takes them and
    reads every answer: the server reads 200 frames a second and spends next to no CPU on
    it (unbounded, it spent all it had), and others are served meanwhile."""
    srv = rated_server(start_server, echo_port, 200)
    attacker = opened_at(srv, route.format(echo=echo_port))
    reader = drain(attacker)
    before = cpu_seconds(srv.process.pid)
    attacker.settimeout(0.5)
    sent = 0
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):  # the server stops reading: our sends block
            sent += attacker.send(frame * 500)
    spent = cpu_seconds(srv.process.pid) - before
    bystander = opened(srv)  # served as before, while the attacker still holds its socket
    bystander.close()
    attacker.shutdown(socket.SHUT_RDWR)
    attacker.close()
    reader.join(5)
    assert spent < 0.5, (spent, sent)
    assert counters(srv)["limit_frame_rate"] >= 2
    assert "Traceback" not in srv.log
