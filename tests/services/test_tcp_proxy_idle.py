"""The TCP proxy's idle timeout, on a clock the test moves: a relay with no byte either
way for ``idle_timeout`` seconds ends 4408; a byte either way starts the wait again."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest_asyncio

from orbiter.config.tcp import TcpSettings
from orbiter.protocol.tcp_access import Target
from orbiter.services.tcp_proxy import Backend, CloseCode, Ending, TcpProxy
from tests.support.clock import ManualClock


class Browser:
    """A browser side that sends what the test puts in and keeps what it is sent."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.sent: list[bytes] = []

    async def receive(self) -> bytes | None:
        return await self.incoming.get()

    async def send(self, data: bytes) -> None:
        self.sent.append(data)


class Relay:
    """A relay under way: its browser, the far end of its backend socket, its task."""

    def __init__(self, browser: Browser, far: socket.socket, task: asyncio.Task[Ending]) -> None:
        self.browser, self.far, self.task = browser, far, task


@pytest_asyncio.fixture
async def relay(manual_clock: ManualClock) -> AsyncIterator[Relay]:
    """A relay idling out after 3 s, over a socket pair standing in for the backend."""
    near, far = socket.socketpair()
    far.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=near)
    backend = Backend(Target("backend.test", 6667), reader, writer, lambda: None)
    browser = Browser()
    task = asyncio.create_task(TcpProxy(TcpSettings(idle_timeout=3)).relay(backend, browser))
    await manual_clock.settle()
    yield Relay(browser, far, task)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    far.close()


async def test_a_relay_without_traffic_ends_4408_after_idle_timeout(
    relay: Relay, manual_clock: ManualClock
) -> None:
    await manual_clock.advance(2.95)
    assert not relay.task.done()
    await manual_clock.advance(0.1)
    assert relay.task.result() == Ending(CloseCode.IDLE, "no traffic for 3 s")


async def test_a_byte_either_way_starts_the_idle_wait_again(
    relay: Relay, manual_clock: ManualClock
) -> None:
    await manual_clock.advance(2)
    relay.browser.incoming.put_nowait(b"up")  # browser to backend at 2 s
    await manual_clock.advance(2.95)
    assert not relay.task.done()
    assert relay.far.recv(10) == b"up"
    relay.far.send(b"down")  # backend to browser at 4.95 s
    for _ in range(100):  # the socket's bytes arrive without the clock moving
        await manual_clock.settle()
        if relay.browser.sent:
            break
    assert relay.browser.sent == [b"down"]
    await manual_clock.advance(2.95)
    assert not relay.task.done()
    await manual_clock.advance(0.1)
    assert relay.task.result() == Ending(CloseCode.IDLE, "no traffic for 3 s")
