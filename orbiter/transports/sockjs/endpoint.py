"""SockJS sessions on the event loop: endpoints, live sessions and their receivers.

An :class:`Endpoint` is one SockJS service (the native protocol at the
prefix, or a test service such as ``echo``): its options, the application
it runs on each session, and its sessions by id. A :class:`LiveSession`
drives one sans-I/O :class:`SockJSSession`: it runs the attached
:class:`Receiver` (whatever writes frames: an HTTP envelope or a
WebSocket), starts and stops the application, and passes it the client's
messages in order. One :class:`SockJSServer` holds the endpoints, sweeps
idle sessions and broken receivers once a second, and closes everything on
shutdown. Nothing here knows HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from orbiter.engine.redis_sessions import SessionDirectory
from orbiter.logs import Counters
from orbiter.protocol.sockjs.frames import (
    ANOTHER_CONNECTION,
    INTERRUPTED,
    OPEN,
    Close,
    Encoded,
    Frame,
    Messages,
)
from orbiter.protocol.sockjs.session_state import Attach, SockJSSession, State

log = logging.getLogger("orbiter.sockjs")

#: Seconds between sweeps for idle sessions and receivers whose client left.
SWEEP_INTERVAL = 1.0


class Connection(Protocol):
    """What an application sees of its SockJS session."""

    @property
    def peer(self) -> str: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """The headers of the latest request that carried the session (for auth hooks)."""
        ...

    def send(self, message: str) -> None: ...

    def send_encoded(self, messages: Encoded) -> None:
        """Send messages encoded once for many sessions (:func:`encode_messages`)."""
        ...

    def close(self, code: int, reason: str) -> None: ...


class SessionApp(Protocol):
    """What runs on one SockJS session: started once open, stopped once closed."""

    async def start(self) -> None: ...

    async def receive(self, message: str) -> None: ...

    async def stop(self) -> None: ...


AppFactory = Callable[[Connection], SessionApp]


class Receiver(Protocol):
    """Writes a session's frames to one connection."""

    def alive(self) -> bool:
        """False once the client has gone away."""
        ...

    async def write(self, frame: Frame) -> bool:
        """Write ``frame``; False when this receiver is done after it (polling, limit)."""
        ...


@dataclass(frozen=True, slots=True)
class EndpointOptions:
    heartbeat: float
    disconnect_delay: float
    #: Bytes of frames after which a streaming response ends.
    response_limit: int
    #: Largest message (UTF-8 bytes) a client may send.
    max_message_size: int
    #: Largest body of an ``xhr_send``/``jsonp_send``, or SockJS WebSocket frame.
    max_body: int
    #: Bytes of messages queued for a client before it is closed as too slow.
    max_queued_bytes: int
    client_url: str
    websocket: bool = True
    cookie_needed: bool = False
    #: WebSocket frames a client may send per second (``limits.frame_rate``).
    frame_rate: int = 200
    #: Where limit violations are counted (the node's counters, ``/api/stats``).
    counters: Counters = field(default_factory=Counters, compare=False)


class LiveSession:
    """One SockJS session running on the loop; the application's :class:`Connection`."""

    def __init__(self, endpoint: Endpoint, key: str | None, peer: str) -> None:
        self.endpoint = endpoint
        self.key = key
        self._peer = peer
        #: Set by the HTTP layer from each request that carries the session.
        self.request_headers: Mapping[str, str] = {}
        self._loop = asyncio.get_running_loop()
        options = endpoint.options
        self.session = SockJSSession(
            heartbeat=options.heartbeat,
            disconnect_delay=options.disconnect_delay,
            max_queued_bytes=options.max_queued_bytes,
            now=self._loop.time(),
        )
        self._ready = asyncio.Event()
        #: Set each time the receiver has taken the queue, and once the session closes.
        self._drained = asyncio.Event()
        self.session.on_ready = self._ready.set
        self._receiver: Receiver | None = None
        self._app = endpoint.factory(self)
        self._app_lock = asyncio.Lock()
        self._app_started = False
        self._app_stopping = False
        #: Set once the application has started, or the session ended before it could.
        self._app_ready = asyncio.Event()

    # ---------------------------------------------------------------- Connection

    @property
    def peer(self) -> str:
        return self._peer

    @property
    def headers(self) -> Mapping[str, str]:
        return self.request_headers

    def send(self, message: str) -> None:
        if not self.session.send(message):
            self._too_slow()

    def send_encoded(self, messages: Encoded) -> None:
        if not self.session.send_encoded(messages):
            self._too_slow()

    def _too_slow(self) -> None:
        log.warning(
            "sockjs session from %s: closed, more than %d bytes queued",
            self._peer,
            self.session.max_queued_bytes,
        )
        self._settle()

    def close(self, code: int, reason: str) -> None:
        if self.session.close(code, reason):
            self._settle()

    # ------------------------------------------------------------------- input

    async def deliver(self, messages: list[str]) -> None:
        """Hand the client's messages to the application, in order.

        Messages that come before the session is open (a WebSocket client may
        send at once) wait for the application to start.
        """
        if not self._app_ready.is_set():
            await self._app_ready.wait()
        async with self._app_lock:
            for message in messages:
                if self.session.state is not State.OPEN or not self._app_started:
                    return
                await self._app.receive(message)

    # ------------------------------------------------------------------ output

    async def serve(self, receiver: Receiver) -> None:
        """Be this session's receiver until it is done, the session ends or the client leaves."""
        session = self.session
        current = self._receiver
        if current is not None and session.attached and not current.alive():
            # The last receiver's client has gone and nobody noticed yet.
            self._interrupt()
        result = session.attach(self._loop.time())
        if result is not Attach.ATTACHED:
            refusal = ANOTHER_CONNECTION if result is Attach.BUSY else session.close_frame
            with contextlib.suppress(ConnectionError):
                await receiver.write(refusal or INTERRUPTED)
            return
        self._receiver = receiver
        interrupted = False
        try:
            await self._pump(receiver)
        except ConnectionError:
            interrupted = True
        except asyncio.CancelledError:
            interrupted = True
            raise
        finally:
            if self._receiver is receiver:
                self._receiver = None
                session.detach(self._loop.time(), interrupted=interrupted)
            self._settle()

    async def _pump(self, receiver: Receiver) -> None:
        session = self.session
        while session.attached and self._receiver is receiver:
            frame = session.next_frame(self._loop.time())
            if frame is None:
                if not receiver.alive():
                    raise ConnectionResetError("the client has gone away")
                self._ready.clear()
                delay = session.wake_at() - self._loop.time()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(delay, 0.0)):
                        await self._ready.wait()
                continue
            if isinstance(frame, Messages):
                self._drained.set()  # the queue is taken: paced producers may go on
            elif frame is OPEN:
                await self._start_app()
            if not await receiver.write(frame) or isinstance(frame, Close):
                return

    async def until_queued_at_most(self, limit: int) -> None:
        """Return once at most ``limit`` bytes wait for the client, or the session is not open.

        For applications that pace a producer by the client (the TCP relay).
        """
        while self.session.is_open and self.session.queued_bytes > limit:
            self._drained.clear()
            await self._drained.wait()

    def end(self) -> None:
        """The session's only connection (a WebSocket) is gone: end it now."""
        self.session.end()
        self._receiver = None
        self._ready.set()
        self._settle()

    # ----------------------------------------------------------------- upkeep

    def sweep(self, now: float) -> None:
        """Notice a receiver whose client left, or a session idle past its delay."""
        receiver = self._receiver
        if receiver is not None and not receiver.alive():
            self._interrupt()
        elif self.session.expire(now):
            self._settle()

    def _interrupt(self) -> None:
        self.session.detach(self._loop.time(), interrupted=True)
        self._receiver = None
        self._ready.set()
        self._settle()

    async def _start_app(self) -> None:
        async with self._app_lock:
            self._app_started = True
            try:
                await self._app.start()
            finally:
                self._app_ready.set()

    async def _stop_app(self) -> None:
        async with self._app_lock:
            await self._app.stop()

    def _settle(self) -> None:
        """Act on the session's state: stop the application, forget the session."""
        if not self.session.is_open:
            self._app_ready.set()
            self._drained.set()
        if not self.session.is_open and self._app_started and not self._app_stopping:
            self._app_stopping = True
            self.endpoint.server.spawn(self._stop_app())
        if self.session.state is State.CLOSED:
            self.endpoint.forget(self)


class Endpoint:
    """One SockJS service: its options, its application, its sessions by id."""

    def __init__(
        self, server: SockJSServer, name: str, options: EndpointOptions, factory: AppFactory
    ) -> None:
        self.server = server
        self.name = name
        self.options = options
        self.factory = factory
        self.sessions: dict[str, LiveSession] = {}
        #: On a Redis engine: where sessions held by other nodes are found, and this
        #: endpoint's name there (its mount's prefix and its name; ``remote.py``).
        self.directory: SessionDirectory | None = None
        self.route = name

    def get(self, key: str) -> LiveSession | None:
        return self.sessions.get(key)

    def open(self, key: str, peer: str) -> LiveSession:
        """The session ``key``, created if it does not exist (or has ended)."""
        live = self.sessions.get(key)
        if live is None:
            live = self.sessions[key] = LiveSession(self, key, peer)
            self.server.track(live)
        return live

    def connect(self, peer: str) -> LiveSession:
        """A session that lives exactly as long as one WebSocket (no id to find it by)."""
        live = LiveSession(self, None, peer)
        self.server.track(live)
        return live

    def forget(self, live: LiveSession) -> None:
        if live.key is not None and self.sessions.get(live.key) is live:
            del self.sessions[live.key]
            if self.directory is not None:
                self.directory.release(self.directory.key(self.route, live.key))
        self.server.untrack(live)


class SockJSServer:
    """The endpoints of one process, their upkeep, and their shutdown."""

    def __init__(self, sweep_interval: float = SWEEP_INTERVAL) -> None:
        self.endpoints: dict[str, Endpoint] = {}
        self._live: set[LiveSession] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._sweep_interval = sweep_interval

    def add(self, name: str, options: EndpointOptions, factory: AppFactory) -> Endpoint:
        endpoint = self.endpoints[name] = Endpoint(self, name, options, factory)
        return endpoint

    def track(self, live: LiveSession) -> None:
        self._live.add(live)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    def untrack(self, live: LiveSession) -> None:
        self._live.discard(live)

    @property
    def session_count(self) -> int:
        return len(self._live)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the background, logging its failure; awaited on shutdown."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("sockjs application failed", exc_info=task.exception())

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._sweep_interval)
            now = loop.time()
            for endpoint in self.endpoints.values():
                for live in list(endpoint.sessions.values()):
                    live.sweep(now)

    async def close(self, code: int, reason: str, timeout: float = 5.0) -> None:
        """Close every session with ``c[code, reason]`` and wait (bounded) for their apps."""
        for live in list(self._live):
            live.close(code, reason)
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            if pending:
                log.warning("%d sockjs applications still stopping", len(pending))
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
