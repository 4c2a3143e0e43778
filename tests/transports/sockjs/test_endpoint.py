"""Live sessions on the event loop, with fake receivers and applications (no network)."""

from __future__ import annotations

import asyncio

from orbiter.protocol.sockjs.frames import Frame, encode_frame
from orbiter.transports.sockjs.endpoint import (
    Connection,
    Endpoint,
    EndpointOptions,
    SessionApp,
    SockJSServer,
)
from tests.support.clock import ManualClock

OPTIONS = EndpointOptions(
    heartbeat=0.2,
    disconnect_delay=0.3,
    response_limit=4096,
    max_message_size=1000,
    max_body=4000,
    max_queued_bytes=100,
    client_url="/sockjs.js",
)


class Recorder:
    """An application that records what happens to it."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.events: list[str] = []
        RECORDERS.append(self)

    async def start(self) -> None:
        self.events.append("start")

    async def receive(self, message: str) -> None:
        self.events.append(f"receive {message}")
        await asyncio.sleep(0)
        self.conn.send(message.upper())

    async def stop(self) -> None:
        self.events.append("stop")


RECORDERS: list[Recorder] = []


class Poll:
    """A receiver that takes one frame, like xhr-polling."""

    def __init__(self) -> None:
        self.frames: list[str] = []
        self.gone = False

    def alive(self) -> bool:
        return not self.gone

    async def write(self, frame: Frame) -> bool:
        if self.gone:
            raise ConnectionResetError
        self.frames.append(encode_frame(frame))
        return False


class Stream(Poll):
    async def write(self, frame: Frame) -> bool:
        await super().write(frame)
        return True


def endpoint(factory: type[SessionApp] | None = None) -> tuple[SockJSServer, Endpoint]:
    RECORDERS.clear()
    server = SockJSServer(sweep_interval=0.05)
    return server, server.add("test", OPTIONS, factory or Recorder)


async def poll(live_endpoint: Endpoint, key: str = "s") -> list[str]:
    receiver = Poll()
    await live_endpoint.open(key, "peer").serve(receiver)
    return receiver.frames


async def test_polling_session_lifecycle() -> None:
    server, ep = endpoint()
    assert await poll(ep) == ["o"]
    live = ep.get("s")
    assert live is not None
    await live.deliver(["a", "b"])
    assert await poll(ep) == ['a["A","B"]']
    assert RECORDERS[0].events == ["start", "receive a", "receive b"]
    live.close(3000, "bye")
    await asyncio.sleep(0.01)
    assert RECORDERS[0].events[-1] == "stop"
    assert await poll(ep) == ['c[3000,"bye"]']
    await server.close(1001, "done")


async def test_a_waiting_poll_is_woken_by_a_message_and_a_second_one_refused() -> None:
    server, ep = endpoint()
    await poll(ep)
    live = ep.open("s", "peer")
    waiting = Poll()
    task = asyncio.create_task(live.serve(waiting))
    await asyncio.sleep(0.02)
    assert await poll(ep) == ['c[2010,"Another connection still open"]']
    live.send("hi")
    await task
    assert waiting.frames == ['a["hi"]']
    await server.close(1001, "done")


async def test_a_waiting_poll_gets_a_heartbeat(manual_clock: ManualClock) -> None:
    server, ep = endpoint()
    await poll(ep)
    waiting = asyncio.create_task(poll(ep))
    await manual_clock.advance(0.19)
    assert not waiting.done()
    await manual_clock.advance(0.01)  # the heartbeat interval, 0.2 s
    assert waiting.done()
    assert waiting.result() == ["h"]
    await server.close(1001, "done")


async def test_a_stream_gets_frames_until_the_session_closes() -> None:
    server, ep = endpoint()
    live = ep.open("s", "peer")
    stream = Stream()
    task = asyncio.create_task(live.serve(stream))
    await asyncio.sleep(0.01)
    live.send("x")
    await asyncio.sleep(0.01)
    live.close(3000, "bye")
    await task
    assert stream.frames == ["o", 'a["x"]', 'c[3000,"bye"]']
    await server.close(1001, "done")


async def test_an_abandoned_poll_is_noticed_and_ends_the_session() -> None:
    server, ep = endpoint()
    await poll(ep)
    live = ep.open("s", "peer")
    waiting = Poll()
    task = asyncio.create_task(live.serve(waiting))
    await asyncio.sleep(0.01)
    waiting.gone = True
    # The next request notices at once that the waiting one's client left.
    frames = await poll(ep)
    assert frames == ['c[1002,"Connection interrupted"]']
    await task
    assert ep.get("s") is None
    await asyncio.sleep(0.01)
    assert RECORDERS[0].events[-1] == "stop"
    await server.close(1001, "done")


async def test_the_sweeper_notices_an_abandoned_poll() -> None:
    server, ep = endpoint()
    await poll(ep)
    waiting = Poll()
    task = asyncio.create_task(ep.open("s", "peer").serve(waiting))
    await asyncio.sleep(0.01)
    waiting.gone = True
    await asyncio.wait_for(task, 1.0)
    assert ep.get("s") is None
    await server.close(1001, "done")


async def test_an_idle_session_is_swept_after_the_delay(manual_clock: ManualClock) -> None:
    server, ep = endpoint()
    await poll(ep)
    assert ep.get("s") is not None
    await manual_clock.advance(0.29)  # short of the disconnect delay (0.3 s): sweeps find it
    assert ep.get("s") is not None
    await manual_clock.advance(0.01 + 0.05)  # the delay, and the sweep (every 0.05 s) after it
    assert ep.get("s") is None
    assert RECORDERS[0].events[-1] == "stop"
    assert server.session_count == 0
    await server.close(1001, "done")


async def test_an_overflowing_queue_closes_the_session() -> None:
    server, ep = endpoint()
    await poll(ep)
    live = ep.open("s", "peer")
    for _ in range(3):
        live.send("x" * 40)
    assert await poll(ep) == ['c[3001,"outgoing buffer full"]']
    await server.close(1001, "done")


async def test_messages_before_open_wait_for_the_app_and_after_close_are_dropped() -> None:
    server, ep = endpoint()
    live = ep.open("s", "peer")
    early = asyncio.create_task(live.deliver(["early"]))
    await asyncio.sleep(0.01)
    assert not early.done()
    await poll(ep)
    await early
    live.close(3000, "bye")
    await live.deliver(["too late"])
    await asyncio.sleep(0.01)
    assert RECORDERS[0].events == ["start", "receive early", "stop"]
    await server.close(1001, "done")


async def test_messages_waiting_for_a_session_that_never_opens_are_dropped(
    manual_clock: ManualClock,
) -> None:
    server, ep = endpoint()
    live = ep.open("s", "peer")
    waiting = asyncio.create_task(live.deliver(["never"]))
    await manual_clock.advance(0.29)
    assert not waiting.done()
    await manual_clock.advance(0.01 + 0.05)  # the idle session is swept
    assert waiting.done()
    assert RECORDERS[0].events == []
    await server.close(1001, "done")


async def test_websocket_sessions_end_with_their_connection() -> None:
    server, ep = endpoint()
    live = ep.connect("peer")
    stream = Stream()
    task = asyncio.create_task(live.serve(stream))
    await asyncio.sleep(0.01)
    assert server.session_count == 1
    live.end()
    await task
    await asyncio.sleep(0.01)
    assert stream.frames == ["o"]
    assert RECORDERS[0].events == ["start", "stop"]
    assert server.session_count == 0
    await server.close(1001, "done")


async def test_shutdown_closes_every_session_and_waits_for_apps() -> None:
    server, ep = endpoint()
    await poll(ep, "a")
    stream = Stream()
    task = asyncio.create_task(ep.open("b", "peer").serve(stream))
    await asyncio.sleep(0.01)
    await server.close(1001, "server shutting down")
    await task
    assert stream.frames == ["o", 'c[1001,"server shutting down"]']
    assert [r.events[-1] for r in RECORDERS] == ["stop", "stop"]
    assert await poll(ep, "a") == ['c[1001,"server shutting down"]']
