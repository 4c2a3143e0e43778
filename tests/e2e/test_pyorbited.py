"""An unmodified-style pyorbited client reaches browsers through the orbit:// listener."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

from orbiter import AsyncClient
from orbiter.ports import free_port
from tests.support.pyorbited_client import SimpleClient
from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient


async def test_orbit_event_reaches_the_key_and_answers_like_03(start_server) -> None:
    orbit_port = free_port()
    # The INI form, as the seeds wrote it (content-sniffed despite the .toml name).
    server: RunningServer = start_server(
        f"[listen]\nhttp://127.0.0.1:0\norbit://127.0.0.1:{orbit_port}\n"
    )
    assert server.wait_for_log(f"pyorbited listening on 127.0.0.1:{orbit_port}")
    browser = await NativeClient.open(server.ws_url, user="alice", session="0", location="/chat")
    orbit = SimpleClient("127.0.0.1", orbit_port)
    try:
        answer = await asyncio.to_thread(orbit.event, ["alice, 0, /chat"], "<b>bob</b> hi")
        assert answer == b"Success\r\nid: 1\r\n\r\n"
        push = await browser.next_push()
        assert push["data"] == "<b>bob</b> hi"
        assert push["channel"] == "$key:alice, 0, /chat"

        answer = await asyncio.to_thread(
            orbit.event, ["alice,0,/chat", "carol, 0, /chat", "bad key"], {"n": 2}
        )
        assert answer == (
            b"Failure\r\nid: 2\r\nmsg: Failed to reach one or more recipients\r\n"
            b"recipient: (bad key)\r\nrecipient: (carol, 0, /chat)\r\n\r\n"
        )
        assert (await browser.next_push())["data"] == {"n": 2}
    finally:
        orbit.close()
        await browser.close()


async def test_protocol_errors_are_answered_then_closed(start_server) -> None:
    orbit_port = free_port()
    server: RunningServer = start_server(
        f"[pyorbited]\nenabled = true\nport = {orbit_port}\nmax_body = 100\n"
    )
    assert server.wait_for_log("pyorbited listening")
    reader, writer = await asyncio.open_connection("127.0.0.1", orbit_port)
    writer.write(b"Orbit 1.0\r\nEvent\r\nid: 9\r\nlength: 5000\r\n")
    answer = await asyncio.wait_for(reader.read(), 10)  # then EOF
    refusal = b"msg: length 5000 is more than 100 bytes (pyorbited.max_body)"
    assert answer == b"Failure\r\nid: 9\r\n" + refusal + b"\r\n\r\n"
    writer.close()


def test_busy_orbit_port_is_one_clear_line(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "busy.ini"
        config.write_text(f"[listen]\nhttp://127.0.0.1:0\norbit://127.0.0.1:{port}\n")
        done = subprocess.run(
            [sys.executable, "-m", "orbiter", f"--config={config}"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert "orbiter: cannot start:" in done.stderr
    assert "address already in use" in done.stderr
    assert "Traceback" not in done.stderr


async def test_event_past_max_channels_is_a_failure_answer_not_a_dropped_connection(
    start_server,
) -> None:
    orbit_port = free_port()
    server: RunningServer = start_server(
        f"[pyorbited]\nenabled = true\nport = {orbit_port}\n[limits]\nmax_channels = 2\n"
    )
    assert server.wait_for_log("pyorbited listening")
    orbit = SimpleClient("127.0.0.1", orbit_port)
    try:
        keys = ["a, 0, /x", "b, 0, /x", "c, 0, /x"]  # a third key channel is one too many
        answer = await asyncio.to_thread(orbit.event, keys, "hi")
        assert answer.startswith(b"Failure\r\nid: 1\r\nmsg: Failed to reach one or more recipients")
        assert b"limits.max_channels" in answer
        assert b"recipient: (c, 0, /x)\r\n" in answer
        # The connection is still in step: the next request is answered too.
        answer = await asyncio.to_thread(orbit.event, ["a, 0, /x"], "again")
        assert answer.startswith(b"Failure\r\nid: 2\r\n")  # nobody subscribed, but answered
    finally:
        orbit.close()


async def test_an_event_to_no_keys_is_a_success_for_both_clients(start_server) -> None:
    """Issue 18 (seed 000): the chat sends each line to every joined user's key, and before
    anyone joined that is none; pyorbited answered Success, orbiter's client raised (400)."""
    orbit_port = free_port()
    server: RunningServer = start_server(
        f"[listen]\nhttp://127.0.0.1:0\norbit://127.0.0.1:{orbit_port}\n"
    )
    assert server.wait_for_log(f"pyorbited listening on 127.0.0.1:{orbit_port}")
    orbit = SimpleClient("127.0.0.1", orbit_port)
    try:
        answer = await asyncio.to_thread(orbit.event, [], "<b>ann joined</b>")
        assert answer == b"Success\r\nid: 1\r\n\r\n"
    finally:
        orbit.close()
    async with AsyncClient(server.url) as api:
        assert await api.event([], "<b>ann joined</b>") == []
