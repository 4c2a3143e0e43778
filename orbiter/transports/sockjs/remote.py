"""One SockJS endpoint's sessions held by other nodes: its requests relayed to their owner.

On a Redis engine a session lives on the node that claimed its id first
(``engine/redis_sessions.py``); a request for it that reaches another node
(no sticky routing) is relayed, never served twice:

- **Sends** (``xhr_send``, ``jsonp_send``): the messages go to the owner in
  one message; it checks that it holds the session (a forged or stale
  forward is refused: 404), delivers them in order and replies; only then is
  the client answered 204. The client sends one body at a time, so order is
  kept; nothing is retried, so nothing is doubled.
- **Receives** (every HTTP envelope): the owner attaches a receiver that
  stands for this request, so the session state machine stays whole on one
  node: one receiver at a time (a second gets ``c[2010, ...]``), heartbeats,
  the response limit. Each frame goes to the asking node, which writes it to
  its client and acknowledges it before the owner takes the next (so the
  owner's queue is bounded by the client, as when local). A client that left,
  or an acknowledgement that never came, ends the receiver as an interrupted
  connection, as a local client that left does.

Relaying rather than moving the session: a session's application (the
native protocol's subscriptions, a TCP connection) cannot move, and a relay
keeps a single owner, so no message can be delivered by two nodes or lost
between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import web
from multidict import CIMultiDict
from redis.exceptions import RedisError

from orbiter.engine.redis_sessions import Message, SessionDirectory
from orbiter.protocol.sockjs.envelopes import CALLBACK, ENVELOPES, Envelope
from orbiter.protocol.sockjs.frames import MESSAGE_TOO_BIG, Frame, largest_message_size
from orbiter.transports.sockjs.endpoint import Endpoint

log = logging.getLogger("orbiter.sockjs")

#: Seconds a node waits for the owner to take a request, or a frame's acknowledgement.
FORWARD_TIMEOUT = 5.0
#: How a session ends on a node that another node took it over from.
SESSION_TAKEN_OVER = (1011, "Session taken over by another node")


class RemoteSessions:
    """Relays ``endpoint``'s requests for sessions held elsewhere, and serves others' here."""

    def __init__(self, endpoint: Endpoint, directory: SessionDirectory, route: str) -> None:
        self.endpoint = endpoint
        self.directory = directory
        self.route = route
        endpoint.directory = directory
        endpoint.route = route
        #: Receives relayed from here: the owner's messages, by request number.
        self._streams: dict[int, asyncio.Queue[Message]] = {}
        #: Receivers standing for other nodes' requests, by (node, request number).
        self._receivers: dict[tuple[str, int], _RemoteReceiver] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._kind = {name: f"{name}@{route}" for name in ("send", "recv", "out", "ack")}
        directory.on(self._kind["send"], self._on_send)
        directory.on(self._kind["recv"], self._on_recv)
        directory.on(self._kind["out"], self._on_out)
        directory.on(self._kind["ack"], self._on_ack)

    # ------------------------------------------------------------- asking side

    async def send(self, session_id: str, messages: list[str]) -> str:
        """Hand ``messages`` to the owner: "ok", "unknown" (no node holds it), "too_big"
        (it closed the session) or "unavailable" (Redis cannot be reached)."""
        key = self.directory.key(self.route, session_id)
        try:
            owner = await self.directory.owner(key)
        except (RedisError, OSError) as exc:
            log.warning("sockjs send: cannot find the session's node: %s", exc)
            return "unavailable"
        if owner is None or owner == self.directory.node_id:
            return "unknown"
        question = {"t": self._kind["send"], "sid": session_id, "messages": messages}
        answer = await self.directory.ask(owner, question, FORWARD_TIMEOUT)
        return "unknown" if answer is None else str(answer.get("result"))

    async def receive(
        self,
        request: web.Request,
        envelope: Envelope,
        session_id: str,
        callback: str,
        headers: CIMultiDict[str],
    ) -> web.StreamResponse | None:
        """Relay this receive to the session's owner; None when this node is (now) the owner."""
        key = self.directory.key(self.route, session_id)
        stale: str | None = None
        try:
            for _ in range(3):
                owner = await self.directory.owner(key) if stale is None else stale
                if owner is None or owner == self.directory.node_id or stale is not None:
                    # Claimed (again, if its entry here is being removed after an end).
                    owner = await self.directory.claim(key, owner, lambda: self._lost(session_id))
                if owner == self.directory.node_id:
                    return None
                answer = await self._relay(request, envelope, session_id, callback, headers, owner)
                if answer is not None:
                    return answer
                stale = owner  # dead, or it no longer holds the session: take it over
        except (RedisError, OSError) as exc:
            log.warning("sockjs: cannot find a session's node: %s", exc)
        return web.Response(status=503, text="Session directory unavailable.\n", headers=headers)

    async def _relay(
        self,
        request: web.Request,
        envelope: Envelope,
        session_id: str,
        callback: str,
        headers: CIMultiDict[str],
        owner: str,
    ) -> web.StreamResponse | None:
        number = self.directory.next_id()
        queue: asyncio.Queue[Message] = asyncio.Queue()
        self._streams[number] = queue
        try:
            question = {
                "t": self._kind["recv"],
                "from": self.directory.node_id,
                "rid": number,
                "sid": session_id,
                "transport": envelope.name,
                "callback": callback,
            }
            if not await self.directory.tell(owner, question):
                return None
            try:
                first = await asyncio.wait_for(queue.get(), FORWARD_TIMEOUT)
            except TimeoutError:
                return None
            if not first.get("started"):
                return None
            return await self._write_frames(request, envelope, callback, headers, owner, number)
        finally:
            del self._streams[number]

    async def _write_frames(
        self,
        request: web.Request,
        envelope: Envelope,
        callback: str,
        headers: CIMultiDict[str],
        owner: str,
        number: int,
    ) -> web.StreamResponse:
        queue = self._streams[number]
        body = b""
        response: web.StreamResponse | None = None
        if envelope.streaming:
            response = web.StreamResponse(headers=headers)
            try:
                await response.prepare(request)
                await response.write(envelope.prelude(callback))
            except ConnectionError:
                response = None
        # The owner sends a heartbeat frame at least this often.
        silence = self.endpoint.options.heartbeat + FORWARD_TIMEOUT
        while True:
            message = await _next(queue, request, silence)
            if message is None or message.get("end"):
                alive = message is not None
                if not alive:  # the client left, or the owner went silent
                    await self.directory.tell(owner, self._ack(number, False))
                break
            data = str(message.get("data", "")).encode()
            alive = True
            if response is None:
                body += data
            else:
                try:
                    await response.write(data)
                except ConnectionError:
                    alive = False
            await self.directory.tell(owner, self._ack(number, alive))
            if not alive:
                break
        if response is None:
            return web.Response(body=body, headers=headers)
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response

    def _ack(self, number: int, alive: bool) -> Message:
        return {
            "t": self._kind["ack"],
            "from": self.directory.node_id,
            "rid": number,
            "alive": alive,
        }

    def _on_out(self, message: Message) -> None:
        number = message.get("rid")
        queue = self._streams.get(number) if isinstance(number, int) else None
        if queue is not None:
            queue.put_nowait(message)

    # ------------------------------------------------------------- owner side

    def _on_send(self, message: Message) -> None:
        session_id, messages = message.get("sid"), message.get("messages")
        if not isinstance(session_id, str) or not isinstance(messages, list):
            log.warning("sockjs: a malformed forwarded send: refused")
            self.directory.reply(message, {"result": "unknown"})
            return
        live = self.endpoint.sessions.get(session_id)
        if live is None or not all(isinstance(m, str) for m in messages):
            log.warning(
                "sockjs: a forwarded send from node %.20s for a session not held here: refused",
                message.get("from"),
            )
            self.directory.reply(message, {"result": "unknown"})
            return
        options = self.endpoint.options
        if largest_message_size(messages) > options.max_message_size:
            options.counters["limit_message_size"] += 1
            live.close(MESSAGE_TOO_BIG.code, MESSAGE_TOO_BIG.reason)
            self.directory.reply(message, {"result": "too_big"})
            return

        async def deliver() -> None:
            await live.deliver(messages)
            self.directory.reply(message, {"result": "ok"})

        self._spawn(deliver())

    def _on_recv(self, message: Message) -> None:
        asker, number = message.get("from"), message.get("rid")
        if not isinstance(asker, str) or not isinstance(number, int):
            log.warning("sockjs: a malformed forwarded receive: dropped")
            return
        self._spawn(self._serve(message, asker, number))

    async def _serve(self, message: Message, asker: str, number: int) -> None:
        envelope = ENVELOPES.get(str(message.get("transport")))
        callback = str(message.get("callback", ""))
        session_id = message.get("sid")
        live = self.endpoint.sessions.get(session_id) if isinstance(session_id, str) else None
        valid = envelope is not None and (
            not envelope.needs_callback or CALLBACK.fullmatch(callback) is not None
        )
        out = self._kind["out"]
        if live is None or envelope is None or not valid:
            await self.directory.tell(asker, {"t": out, "rid": number, "unknown": True})
            return
        receiver = _RemoteReceiver(self, asker, number, envelope, callback)
        self._receivers[asker, number] = receiver
        try:
            await self.directory.tell(asker, {"t": out, "rid": number, "started": True})
            await live.serve(receiver)
        finally:
            del self._receivers[asker, number]
            await self.directory.tell(asker, {"t": out, "rid": number, "end": True})

    def _on_ack(self, message: Message) -> None:
        asker, number = message.get("from"), message.get("rid")
        if not isinstance(asker, str) or not isinstance(number, int):
            return
        receiver = self._receivers.get((asker, number))
        if receiver is not None:
            receiver.acked(bool(message.get("alive")))

    def _lost(self, session_id: str) -> None:
        """Another node took this session over (this one was taken for dead): end it here."""
        live = self.endpoint.sessions.get(session_id)
        if live is not None:
            live.close(*SESSION_TAKEN_OVER)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class _RemoteReceiver:
    """Stands, on the owner, for a receiving request that reached another node."""

    def __init__(
        self, relay: RemoteSessions, asker: str, number: int, envelope: Envelope, callback: str
    ) -> None:
        self._relay = relay
        self._asker = asker
        self._number = number
        self._envelope = envelope
        self._callback = callback
        self._left = relay.endpoint.options.response_limit
        self._gone = False
        self._ack: asyncio.Future[bool] | None = None

    def alive(self) -> bool:
        return not self._gone

    async def write(self, frame: Frame) -> bool:
        data = self._envelope.wrap(frame, self._callback)
        self._ack = asyncio.get_running_loop().create_future()
        message = {"t": self._relay._kind["out"], "rid": self._number, "data": data.decode()}
        if not await self._relay.directory.tell(self._asker, message):
            raise ConnectionResetError("the asking node is gone")
        try:
            alive = await asyncio.wait_for(self._ack, FORWARD_TIMEOUT)
        except TimeoutError:
            alive = False
        if not alive:
            self._gone = True
            raise ConnectionResetError("the client has gone away")
        if not self._envelope.streaming:
            return False
        self._left -= len(data)
        return self._left > 0

    def acked(self, alive: bool) -> None:
        if not alive:
            self._gone = True
        if self._ack is not None and not self._ack.done():
            self._ack.set_result(alive)


async def _next(
    queue: asyncio.Queue[Message], request: web.Request, silence: float
) -> Message | None:
    """The owner's next message; None once the client left or after ``silence`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + silence
    while loop.time() < deadline:
        try:
            return await asyncio.wait_for(queue.get(), 1.0)
        except TimeoutError:
            transport = request.transport
            if transport is None or transport.is_closing():
                return None
    return None
