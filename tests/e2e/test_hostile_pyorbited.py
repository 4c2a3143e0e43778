"""The pyorbited listener against a peer with no credentials, on a real server process.

Each limit of ``[pyorbited]`` is checked at its value: the bind rule, the
connection limit, the idle timeout, the request size (with the server's
RSS), control characters in echoed values, and a peer that never reads.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from orbiter.ports import free_port
from tests.support.pyorbited_client import SimpleClient
from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient

#: The defaults of PyorbitedSettings, which some tests check as they ship.
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_MAX_REQUEST = 1_114_112

EVENT = b'Orbit 1.0\r\nEvent\r\nid: 1\r\nrecipient: a, 0, /x\r\nlength: 4\r\n\r\n"hi"'
FAILURE_ID_1 = b"Failure\r\nid: 1\r\nmsg: Failed to reach one or more recipients\r\n"


async def stats(server: RunningServer) -> dict[str, int]:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/api/stats") as r:
        result: dict[str, Any] = await r.json()
    counters: dict[str, int] = result["counters"]
    return counters


async def answer_and_eof(reader: asyncio.StreamReader, timeout: float = 10) -> bytes:
    """Everything the server writes until it closes the connection."""
    return await asyncio.wait_for(reader.read(), timeout)


def start_orbit(start_server: Any, extra: str = "") -> tuple[RunningServer, int]:
    port = free_port()
    server: RunningServer = start_server(f"[pyorbited]\nenabled = true\nport = {port}\n{extra}")
    assert server.wait_for_log("pyorbited listening")
    return server, port


def run_serve(tmp_path: Path, name: str, text: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / name
    config.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "orbiter", "serve", "--port", "0", "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=15,
    )


# ----------------------------------------------------------------------------- binding


@pytest.mark.parametrize("host", ["0.0.0.0", "", "::", "192.0.2.1", "orbit.example"])
def test_binding_off_loopback_is_refused_naming_the_key(tmp_path: Path, host: str) -> None:
    port = free_port()
    done = run_serve(
        tmp_path, "o.toml", f'[pyorbited]\nenabled = true\nhost = "{host}"\nport = {port}\n'
    )
    assert done.returncode == 2, done.stderr
    assert "'pyorbited.host'" in done.stderr
    assert "pyorbited.allow_remote = true" in done.stderr
    assert "no authentication" in done.stderr
    assert "Traceback" not in done.stderr
    assert "listening" not in done.stdout + done.stderr  # refused before anything was bound


def test_binding_off_loopback_in_the_seed_ini_is_refused_naming_the_line(tmp_path: Path) -> None:
    port = free_port()
    done = run_serve(tmp_path, "o.ini", f"[listen]\nhttp://127.0.0.1:0\norbit://0.0.0.0:{port}\n")
    assert done.returncode == 2, done.stderr
    assert "pyorbited.allow_remote" in done.stderr
    assert f"line 3: 'orbit://0.0.0.0:{port}'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_needs_no_key_and_no_warning(start_server: Any, host: str) -> None:
    port = free_port()
    server: RunningServer = start_server(
        f'[pyorbited]\nenabled = true\nhost = "{host}"\nport = {port}\n'
    )
    assert server.wait_for_log("pyorbited listening")
    assert "off loopback" not in server.log


async def test_allow_remote_binds_and_warns_that_anyone_can_publish(start_server: Any) -> None:
    port = free_port()
    server: RunningServer = start_server(
        f'[pyorbited]\nenabled = true\nhost = "0.0.0.0"\nport = {port}\nallow_remote = true\n'
    )
    try:
        assert server.wait_for_log("pyorbited listening on 0.0.0.0")
        assert server.wait_for_log("no authentication")
        warning = next(line for line in server.lines if "off loopback" in line)
        assert "WARNING" in warning
        assert "pyorbited.allow_remote" in warning
        assert "anyone who can reach this port can publish to every channel" in warning
        orbit = SimpleClient("127.0.0.1", port)
        try:
            answer = await asyncio.to_thread(orbit.event, ["a, 0, /x"], "hi")
            assert answer.startswith(FAILURE_ID_1)  # served (nobody subscribed)
        finally:
            orbit.close()
    finally:
        server.stop()  # do not leave a port open on every interface


# ----------------------------------------------------------------------------- connections


async def test_connection_limit_serves_exactly_max_connections(start_server: Any) -> None:
    server, port = start_orbit(start_server, "max_connections = 4\n")
    held = []
    for _ in range(4):  # each one is served
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(EVENT)
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(FAILURE_ID_1)
        held.append((reader, writer))

    for _ in range(20):  # the fifth and later are answered and closed at once
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answer = await answer_and_eof(reader, 5)
        assert answer == (
            b"Failure\r\nid: \r\nmsg: too many connections (4, pyorbited.max_connections)\r\n\r\n"
        )
        writer.close()
    assert (await stats(server))["limit_pyorbited_connections"] == 20
    refusals = [line for line in server.lines if "pyorbited.max_connections" in line]
    assert 1 <= len(refusals) <= 2, refusals  # rate-limited: 20 refusals, not 20 lines

    # A slot that frees up is taken again; the held ones are still served.
    held.pop()[1].close()
    deadline = time.monotonic() + 5
    while True:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(EVENT)
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        if answer.startswith(FAILURE_ID_1):
            break
        assert time.monotonic() < deadline, "the freed slot was not given back"
        writer.close()
        await asyncio.sleep(0.05)
    for reader, writer in held:
        writer.write(EVENT)
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(FAILURE_ID_1)
        writer.close()
    writer.close()


async def test_idle_crowd_is_bounded_by_the_default_limit_then_closed(
    start_server: Any,
) -> None:
    """300 idle sockets: 64 are held (the default), for idle_timeout, then all are closed."""
    server, port = start_orbit(start_server, "idle_timeout = 2\n")
    started = time.monotonic()
    socks = [await asyncio.open_connection("127.0.0.1", port) for _ in range(300)]
    answers = await asyncio.gather(*(answer_and_eof(reader) for reader, _ in socks))
    assert time.monotonic() - started < 6  # the held ones too were closed, at idle_timeout
    full = b"Failure\r\nid: \r\nmsg: too many connections (64, pyorbited.max_connections)\r\n\r\n"
    idle = b"Failure\r\nid: \r\nmsg: closed: no byte for 2 s (pyorbited.idle_timeout)\r\n\r\n"
    assert set(answers) == {full, idle}
    assert answers.count(idle) == DEFAULT_MAX_CONNECTIONS
    for _, writer in socks:
        writer.close()
    orbit = SimpleClient("127.0.0.1", port)  # and a real client is served again
    try:
        assert (await asyncio.to_thread(orbit.event, ["a, 0, /x"], "hi")).startswith(FAILURE_ID_1)
    finally:
        orbit.close()
    counters = await stats(server)
    assert counters["pyorbited_idle_closed"] == DEFAULT_MAX_CONNECTIONS
    assert counters["limit_pyorbited_connections"] == 300 - DEFAULT_MAX_CONNECTIONS


async def test_idle_timeout_closes_a_silent_connection_at_its_value(start_server: Any) -> None:
    server, port = start_orbit(start_server, "idle_timeout = 2\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    answer = await answer_and_eof(reader)
    elapsed = time.monotonic() - started
    assert (
        answer
        == b"Failure\r\nid: \r\nmsg: closed: no byte for 2 s (pyorbited.idle_timeout)\r\n\r\n"
    )
    assert 1.8 <= elapsed <= 3.5, elapsed
    writer.close()
    assert server.wait_for_log("closed: idle for 2 s")


async def test_idle_timeout_counts_from_the_last_byte_not_the_first(start_server: Any) -> None:
    """A slow but live app server (a byte a second, 5 s for one event) is not cut at 2 s."""
    _, port = start_orbit(start_server, "idle_timeout = 2\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    event = EVENT
    for i in range(0, len(event), len(event) // 5 + 1):
        writer.write(event[i : i + len(event) // 5 + 1])
        await asyncio.sleep(1)
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(FAILURE_ID_1)
    writer.close()


async def test_a_served_connection_may_wait_between_requests_past_idle_timeout(
    start_server: Any,
) -> None:
    """pyorbited's ``Client()`` is made once and kept: after a request it may stay quiet."""
    server, port = start_orbit(start_server, "idle_timeout = 1\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(EVENT)
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(FAILURE_ID_1)
    await asyncio.sleep(2.5)  # quiet for more than twice idle_timeout, between requests
    writer.write(EVENT)
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(FAILURE_ID_1)
    writer.write(EVENT[:20])  # within a request, the timeout holds again
    started = time.monotonic()
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert b"pyorbited.idle_timeout" in answer
    assert 0.8 <= time.monotonic() - started <= 2.5
    writer.close()
    assert server.wait_for_log("closed: idle for 1 s")


def test_a_peer_that_never_reads_answers_is_dropped(start_server: Any) -> None:
    """Pipelined requests whose answers are never read: cut within idle_timeout, RSS flat."""
    server, port = start_orbit(start_server, "idle_timeout = 2\n")
    before = server.rss_bytes()
    # Each request names a malformed 4000-byte recipient, which the Failure answer echoes.
    request = (
        b"Orbit 1.0\r\nEvent\r\nid: 1\r\nrecipient: " + b"r" * 4000 + b"\r\nlength: 2\r\n\r\n{}"
    )
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(0.2)
    blocked_since: float | None = None
    sent = 0
    try:
        while True:
            try:
                sent += sock.send(request * 16)
                blocked_since = None
            except TimeoutError:
                blocked_since = blocked_since or time.monotonic()
            assert sent < 200_000_000, "the server kept reading while its answers piled up"
            if blocked_since is not None:
                assert time.monotonic() - blocked_since < 6, "not dropped"
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        sock.close()
    assert server.rss_bytes() - before < 20_000_000
    assert server.wait_for_log("dropped: not reading answers")


# ----------------------------------------------------------------------------- request size


def request_of_size(size: int) -> bytes:
    """An event of exactly ``size`` bytes: a 1 MiB body, padded out with unknown headers."""
    body = b'"' + b"b" * (1_048_576 - 2) + b'"'
    head = b"Orbit 1.0\r\nEvent\r\nid: 8\r\nrecipient: a, 0, /x\r\n"
    tail = f"length: {len(body)}\r\n\r\n".encode() + body
    room = size - len(head) - len(tail)
    count = -(-room // 4000)  # lines of about 4000 bytes: "x-pad: " + value + CRLF
    sizes = [room // count + (i < room % count) for i in range(count)]
    data = head + b"".join(b"x-pad: " + b"p" * (n - 9) + b"\r\n" for n in sizes) + tail
    assert len(data) == size
    return data


@pytest.mark.parametrize("extra", [0, 1])
async def test_the_default_max_request_to_the_byte(start_server: Any, extra: int) -> None:
    server, port = start_orbit(start_server)
    browser = await NativeClient.open(server.ws_url, user="a", session="0", location="/x")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request_of_size(DEFAULT_MAX_REQUEST + extra))
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        if extra:
            assert answer == (
                b"Failure\r\nid: 8\r\nmsg: the request is more than "
                + str(DEFAULT_MAX_REQUEST).encode()
                + b" bytes (pyorbited.max_request)\r\n\r\n"
            )
            assert await answer_and_eof(reader) == b""
        else:
            assert answer == b"Success\r\nid: 8\r\n\r\n"
            assert len((await browser.next_push())["data"]) == 1_048_576 - 2
    finally:
        writer.close()
        await browser.close()


def test_unfinished_requests_cannot_hold_memory(start_server: Any) -> None:
    """16 peers each stream 4 MiB of headers and never finish: refused at max_request, RSS flat.

    (Before the limit, each such request was held whole: ~64 MB per connection.)
    """
    server, port = start_orbit(start_server)
    before = server.rss_bytes()
    peak = before
    answers: list[bytes] = []
    done = threading.Event()

    def attack() -> None:
        line = b"recipient: " + b"a" * 3987 + b"\r\n"  # 4000 bytes
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            sock.sendall(b"Orbit 1.0\r\nEvent\r\nid: 6\r\n")
            for _ in range(64):  # 4 MiB
                sock.sendall(line * 16)
        except (ConnectionResetError, BrokenPipeError):
            pass
        try:
            answers.append(sock.recv(4096))
        except ConnectionResetError:
            answers.append(b"reset")
        sock.close()

    threads = [threading.Thread(target=attack) for _ in range(16)]
    for thread in threads:
        thread.start()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, server.rss_bytes())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    for thread in threads:
        thread.join(30)
    done.set()
    sampler.join()
    assert peak - before < 40_000_000, (before, peak)
    expected = b"Failure\r\nid: 6\r\nmsg: the request is more than "
    assert [a[: len(expected)] for a in answers] == [expected] * 16


# ----------------------------------------------------------------------------- echoed values


@pytest.mark.parametrize(
    ("injected", "words"),
    [
        (b"id: 1\nSuccess", b"the 'id' header contains a control character (0x0a)"),
        (b"id: 1\rmsg: x", b"the 'id' header contains a control character (0x0d)"),
        (b"id: 1\r\nrecipient: a, 0, /x\nid: 2", b"the 'recipient' header contains a control"),
    ],
)
async def test_control_characters_are_refused_and_never_echoed(
    start_server: Any, injected: bytes, words: bytes
) -> None:
    server, port = start_orbit(start_server)
    browser = await NativeClient.open(server.ws_url, user="a", session="0", location="/x")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"Orbit 1.0\r\nEvent\r\n" + injected + b"\r\nlength: 4\r\n\r\n" + b'"hi"')
    answer = await answer_and_eof(reader)
    writer.close()
    head, sep, rest = answer.partition(b"\r\n\r\n")
    assert sep
    assert rest == b""  # one answer, then closed
    lines = head.split(b"\r\n")
    assert lines[0] == b"Failure"
    assert lines[1] in (b"id: ", b"id: 1")
    assert lines[2].startswith(b"msg: " + words)
    assert len(lines) == 3
    assert all(b"\n" not in line and b"\r" not in line for line in lines)
    assert b"Success" not in answer
    assert b"id: 2" not in answer
    assert (await stats(server))["pyorbited_protocol_errors"] == 1
    assert server.wait_for_log("contains a control character")
    # and nothing was published
    writer2 = SimpleClient("127.0.0.1", port)
    try:
        await asyncio.to_thread(writer2.event, ["a, 0, /x"], "after")
    finally:
        writer2.close()
    assert (await browser.next_push())["data"] == "after"
    await browser.close()
