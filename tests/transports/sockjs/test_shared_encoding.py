"""A channel's batch goes out over SockJS encoded once for all sessions, in order with the rest.

:class:`NativeApp` is the outbox's sink: a :class:`SharedBatch` is JSON-encoded
once (cached on the batch) and every SockJS session queues the same
:class:`Encoded` elements; single messages and batches still come out in
order, and every transport writes exactly what it wrote when each message
was encoded on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orbiter.model import Publication
from orbiter.protocol.native import DisconnectCode
from orbiter.protocol.sockjs.envelopes import ENVELOPES
from orbiter.protocol.sockjs.frames import (
    Close,
    Encoded,
    Messages,
    encode_frame,
    encode_json,
    encode_messages,
)
from orbiter.protocol.sockjs.session_state import SLOW_CONSUMER, SockJSSession
from orbiter.services.outbox import Flusher, Outbox
from orbiter.services.pushes import pushes
from orbiter.services.shared_batch import SharedBatch
from orbiter.transports.sockjs import services
from orbiter.transports.sockjs.hixie76 import _Hixie76Receiver
from orbiter.transports.sockjs.services import NativeApp
from orbiter.transports.sockjs.websocket import _FramedReceiver, _RawReceiver

#: Quotes, backslashes, controls, non-ASCII and the code points SockJS escapes.
TRICKY = ['{"a":1}', 'q"\\', "\x00\n\t", "é ☃ 😀", "\u2028\u200c\u2060\ufff0\uffff", ""]


class FakeClient:
    """What NativeApp uses of a ClientSession: its outbox and why it closed."""

    def __init__(self, limit: int) -> None:
        self.outbox = Outbox(limit)
        self.close_code: DisconnectCode | None = None
        self.close_reason = ""

    async def receive(self, message: str) -> None:
        pass

    def close(self, code: DisconnectCode, reason: str, *, discard: bool = False) -> None:
        self.close_code, self.close_reason = code, reason
        self.outbox.close(discard=discard)


class FakeNode:
    def __init__(self, limit: int = 1 << 20) -> None:
        self.flusher = Flusher()
        self.limit = limit
        self.clients: list[FakeClient] = []
        self.ended: list[FakeClient] = []

    def new_session(self, peer: str, credentials: object) -> FakeClient:
        client = FakeClient(self.limit)
        self.clients.append(client)
        return client

    async def end_session(self, client: FakeClient) -> None:
        self.ended.append(client)


class SessionConnection:
    """A Connection straight onto a sans-I/O SockJS session (what LiveSession does)."""

    def __init__(self, max_queued_bytes: int = 1 << 20) -> None:
        self.session = SockJSSession(
            heartbeat=25.0, disconnect_delay=5.0, max_queued_bytes=max_queued_bytes, now=0.0
        )
        self.session.attach(0.0)
        assert encode_frame(self.session.next_frame(0.0) or Close(0, "")) == "o"

    @property
    def peer(self) -> str:
        return "127.0.0.1"

    @property
    def headers(self) -> Mapping[str, str]:
        return {}

    def send(self, message: str) -> None:
        self.session.send(message)

    def send_encoded(self, messages: Encoded) -> None:
        self.session.send_encoded(messages)

    def close(self, code: int, reason: str) -> None:
        self.session.close(code, reason)

    def frames(self) -> list[str]:
        out = []
        while (frame := self.session.next_frame(0.0)) is not None:
            out.append(frame)
            if isinstance(frame, Close):
                break
        return [encode_frame(f) for f in out]


def batch(channel: str, messages: Sequence[str], first_offset: int = 1) -> SharedBatch:
    """A batch whose native pushes are its messages, so that the tests choose the exact
    bytes: set where :func:`pushes` caches them (it is compiled: not patched)."""
    pubs = [Publication(channel, first_offset + i, "e", m, 0.0) for i, m in enumerate(messages)]
    shared = SharedBatch(channel, pubs)
    shared.native = [m.encode() for m in messages]
    shared.native_size = sum(map(len, shared.native))
    return shared


async def started(node: FakeNode, conn: SessionConnection) -> tuple[NativeApp, FakeClient]:
    app = NativeApp(node, conn)  # type: ignore[arg-type]
    await app.start()
    return app, node.clients[-1]


def expected(messages: Sequence[str]) -> str:
    """The frame as it was written when each session encoded its own messages."""
    return "a" + encode_json(list(messages))


async def test_a_batch_is_encoded_once_for_every_sockjs_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[Sequence[bytes]] = []

    def counting(messages: Sequence[bytes]) -> Encoded:
        calls.append(messages)
        return encode_messages(messages)

    monkeypatch.setattr(services, "encode_messages", counting)
    node = FakeNode()
    conns = [SessionConnection() for _ in range(50)]
    clients = [(await started(node, conn))[1] for conn in conns]
    shared = batch("ch", TRICKY)
    for client in clients:
        assert client.outbox.put_batch(shared)
    assert len(calls) == 1
    encoded = {id(part) for conn in conns for part in conn.session._queue}
    assert len(encoded) == 1  # the same object queued by all 50 sessions
    assert pushes(shared) is shared.native
    for conn in conns:
        assert conn.session.queued_bytes == shared.native_size
        assert conn.frames() == [expected(TRICKY)]
    second = batch("ch", ["next"], first_offset=len(TRICKY) + 1)
    for client in clients:
        client.outbox.put_batch(second)
    assert len(calls) == 2


async def test_singles_and_batches_keep_their_order() -> None:
    node = FakeNode()
    conn = SessionConnection()
    _, client = await started(node, conn)
    outbox = client.outbox
    assert outbox.put(b"reply-1")  # queued, pushed at the end of the iteration
    assert outbox.put_batch(batch("ch", ["p1", "p2"]))  # behind it, in the outbox
    await asyncio.sleep(0)
    assert outbox.put_batch(batch("ch", ["p3"], 3))  # empty outbox: straight to the session
    assert outbox.put(b"reply-2")
    await asyncio.sleep(0)
    assert outbox.put_batch(batch("ch", TRICKY, 4))
    order = ["reply-1", "p1", "p2", "p3", "reply-2", *TRICKY]
    queued = conn.session._queue
    assert any(isinstance(part, Encoded) for part in queued)
    assert any(isinstance(part, str) for part in queued)
    frame = Messages(tuple(queued))
    plain = Messages(tuple(order))
    assert frame.strings() == order
    # Every transport writes the bytes it wrote when each message was its own string.
    assert encode_frame(frame) == encode_frame(plain) == expected(order)
    for envelope in ENVELOPES.values():
        assert envelope.wrap(frame, "cb") == envelope.wrap(plain, "cb"), envelope.name
    assert await written(frame) == await written(plain)
    assert (await written(plain))["raw websocket"] == order
    assert conn.frames() == [expected(order)]


class Recorder:
    """A WebSocket's ``send_str``, or a stream writer's ``write``/``drain``, that records."""

    def __init__(self) -> None:
        self.sent: list[object] = []

    async def send_str(self, text: str) -> None:
        self.sent.append(text)

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    async def drain(self) -> None:
        pass


async def written(frame: Messages) -> dict[str, list[object]]:
    """What the WebSocket (SockJS-framed and raw) and hixie-76 receivers write for ``frame``."""
    out = {}
    for name, make in (
        ("websocket", _FramedReceiver),
        ("raw websocket", _RawReceiver),
        ("hixie-76", _Hixie76Receiver),
    ):
        recorder = Recorder()
        await make(recorder).write(frame)  # type: ignore[arg-type]
        out[name] = recorder.sent
    return out


async def test_what_was_queued_goes_out_before_the_close_frame() -> None:
    node = FakeNode()
    conn = SessionConnection()
    app, client = await started(node, conn)
    client.outbox.put_batch(batch("ch", ["last batch"]))
    client.outbox.put(b"goodbye")
    client.close(DisconnectCode.SHUTDOWN, "server shutting down")
    assert conn.frames() == [
        expected(["last batch", "goodbye"]),
        encode_frame(Close(int(DisconnectCode.SHUTDOWN), "server shutting down")),
    ]
    await app.stop()
    assert node.ended == [client]


async def test_a_batch_past_the_sessions_limit_closes_it_as_a_slow_consumer() -> None:
    node = FakeNode()
    conn = SessionConnection(max_queued_bytes=10)
    _, client = await started(node, conn)
    assert client.outbox.put_batch(batch("ch", ["12345"]))
    assert conn.session.queued_bytes == 5
    client.outbox.put_batch(batch("ch", ["123456"], 2))
    assert not conn.session.is_open
    assert conn.session.queued_bytes == 0  # discarded
    assert conn.frames() == [encode_frame(SLOW_CONSUMER)]


async def test_until_the_outbox_closes_nothing_is_awaited_per_session() -> None:
    node = FakeNode()
    conn = SessionConnection()
    before = len(asyncio.all_tasks())
    await started(node, conn)
    assert len(asyncio.all_tasks()) == before  # no writer task per session


parts = st.lists(
    st.one_of(
        st.text(max_size=8),
        st.lists(st.text(max_size=8), max_size=4).map(
            lambda ms: encode_messages([m.encode() for m in ms])
        ),
    ),
    max_size=8,
)


@given(parts)
def test_joined_elements_are_the_array_of_all_messages(mixed: list[Any]) -> None:
    frame = Messages(tuple(mixed))
    assert encode_frame(frame) == expected(frame.strings())
