"""The STOMP session without a network: sequences of frames, well-formed and not, against a
real PubSub on the memory engine. No input makes it raise; every answer is a frame; after an
ERROR nothing more is handled; queue messages survive whatever a consumer does."""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orbiter.auth import Authenticator
from orbiter.config.settings import AuthSettings, Config
from orbiter.config.stomp import StompSettings
from orbiter.engine.memory import MemoryBroker, MemoryPresenceStore
from orbiter.protocol.stomp import Frame, FrameParser, encode_frame
from orbiter.services.outbox import Pull
from orbiter.services.pubsub import PubSub
from orbiter.services.stomp.broker import StompBroker
from orbiter.services.stomp.session import StompSession
from tests.support.clock import ManualClock
from tests.support.keys import SECRET, token
from tests.support.wrapped_broker import WrappedBroker

CONFIG = replace(Config(), stomp=StompSettings(max_queue_length=50, max_unacked=3))

_commands = st.sampled_from(
    ["SEND", "SUBSCRIBE", "UNSUBSCRIBE", "ACK", "NACK", "BEGIN", "COMMIT", "ABORT", "FROB"]
)
_values = st.sampled_from(
    ["/topic/chat:a", "/queue/q", "/topic/$key:x", "/nowhere", "1", "2", "tx", "", "client"]
)
_names = st.sampled_from(
    [
        "destination",
        "id",
        "ack",
        "transaction",
        "receipt",
        "message-id",
        "content-type",
        "orbiter-since",
        "orbiter-epoch",
    ]
)
_frames = st.lists(
    st.tuples(
        _commands,
        st.lists(st.tuples(_names, _values), max_size=4),
        st.binary(max_size=12),
    ),
    max_size=12,
)


async def _broker() -> StompBroker:
    engine = MemoryBroker()
    await engine.start()
    return StompBroker(CONFIG, PubSub(CONFIG, engine, MemoryPresenceStore()), Authenticator(CONFIG))


#: Each session's outbox reader (a transport's, as STOMP over TCP has).
_PULLS: weakref.WeakKeyDictionary[StompSession, Pull] = weakref.WeakKeyDictionary()


async def _written(session: StompSession) -> list[Frame]:
    """The frames the session queued for its client so far."""
    pull = _PULLS.get(session)
    if pull is None:
        pull = _PULLS[session] = Pull(session.outbox)
    try:
        batch = await asyncio.wait_for(pull.take(), 0.1)
    except TimeoutError:
        batch = []
    return FrameParser(version="1.2").feed(b"".join(batch))


async def _connect(broker: StompBroker, peer: str = "test") -> StompSession:
    session = broker.new_session(peer=peer, transport="test")
    await session.receive(encode_frame("CONNECT", [("accept-version", "1.2"), ("host", "x")]))
    return session


async def _run(frames: list[tuple[str, list[tuple[str, str]], bytes]], garbage: bytes) -> None:
    broker = await _broker()
    victim = await _connect(broker)
    keeper = await _connect(broker)
    await keeper.receive(
        encode_frame("SUBSCRIBE", [("id", "k"), ("destination", "/queue/q"), ("ack", "client")])
    )
    producer = await _connect(broker)
    await producer.receive(encode_frame("SEND", [("destination", "/queue/q")], b"before"))
    for command, headers, body in frames:
        await victim.receive(encode_frame(command, headers, body))
    await victim.receive(garbage)
    written = await _written(victim)
    assert written[0].command == "CONNECTED"
    errors = [f for f in written if f.command == "ERROR"]
    assert len(errors) <= 1
    if errors:
        assert errors[0].get("message")
        assert errors[0].body
        assert written[-1].command == "ERROR"
        assert victim.closed
    assert {f.command for f in written} <= {"CONNECTED", "MESSAGE", "RECEIPT", "ERROR"}
    # The others go on; no message of the queue is lost, whatever the victim held.
    await broker.end_session(victim)
    await producer.receive(encode_frame("SEND", [("destination", "/queue/q")], b"after"))
    await broker.end_session(keeper)
    consumer = await _connect(broker)
    await consumer.receive(encode_frame("SUBSCRIBE", [("id", "c"), ("destination", "/queue/q")]))
    bodies = [f.body for f in await _written(consumer) if f.command == "MESSAGE"]
    assert b"before" in bodies
    assert b"after" in bodies
    assert not producer.closed


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=_frames, garbage=st.binary(max_size=40))
def test_no_sequence_of_frames_makes_the_session_raise(frames, garbage):
    asyncio.run(_run(frames, garbage))


class SlowHistoryBroker(WrappedBroker):
    """The memory engine, but reading history waits until the test lets it go on."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = asyncio.Event()
        self.go_on = asyncio.Event()

    async def history(self, channel, since, policy, limit=None):
        page = await super().history(channel, since, policy, limit)
        self.reading.set()
        await self.go_on.wait()
        return page


async def test_publications_during_a_recovery_come_after_it_once_each():
    engine = SlowHistoryBroker()
    await engine.start()
    pubsub = PubSub(CONFIG, engine, MemoryPresenceStore())
    broker = StompBroker(CONFIG, pubsub, Authenticator(CONFIG))
    first = await pubsub.publish("chat:r", "m1")
    await pubsub.publish("chat:r", "m2")
    session = await _connect(broker)
    await _written(session)  # CONNECTED
    subscribing = asyncio.create_task(
        session.receive(
            encode_frame(
                "SUBSCRIBE",
                [
                    ("id", "1"),
                    ("destination", "/topic/chat:r"),
                    ("orbiter-since", "0"),
                    ("orbiter-epoch", first.epoch),
                    ("receipt", "r"),
                ],
            )
        )
    )
    await engine.reading.wait()
    # History (m1, m2) has been read; m3 is published before it is sent.
    await pubsub.publish("chat:r", "m3")
    engine.go_on.set()
    await subscribing
    await pubsub.publish("chat:r", "m4")
    frames = await _written(session)
    messages = [(f.get("orbiter-offset"), f.body) for f in frames if f.command == "MESSAGE"]
    assert messages == [("1", b"m1"), ("2", b"m2"), ("3", b"m3"), ("4", b"m4")]
    assert [f.get("orbiter-recovered") for f in frames if f.command == "RECEIPT"] == ["true"]


async def test_recovery_offset_of_non_ascii_digits_is_an_error_frame():
    broker = await _broker()
    session = await _connect(broker)
    await session.receive(
        encode_frame(
            "SUBSCRIBE",
            [
                ("id", "1"),
                ("destination", "/topic/chat:a"),
                ("orbiter-since", "\u00b2"),
                ("orbiter-epoch", "e"),
            ],
        )
    )
    errors = [f for f in await _written(session) if f.command == "ERROR"]
    assert [f.get("message") for f in errors] == ["bad recovery headers"]
    assert session.closed
    await broker.end_session(session)


async def test_a_burst_is_encoded_once_for_all_stomp_subscribers(monkeypatch):
    import orbiter.services.stomp.broker as broker_module
    from orbiter.services.stomp.bodies import body_of

    encoded: list[object] = []

    def counting_body_of(data):
        encoded.append(data)
        return body_of(data)

    monkeypatch.setattr(broker_module, "body_of", counting_body_of)
    broker = await _broker()
    sessions = [await _connect(broker) for _ in range(3)]
    for session in sessions:
        await _written(session)  # CONNECTED
        await session.receive(
            encode_frame("SUBSCRIBE", [("id", "s"), ("destination", "/topic/chat:burst")])
        )
    # Two publications in one loop iteration: PubSub hands them over as one batch.
    await asyncio.gather(
        broker.pubsub.publish("chat:burst", "one"), broker.pubsub.publish("chat:burst", "two")
    )
    for session in sessions:
        bodies = [f.body for f in await _written(session) if f.command == "MESSAGE"]
        assert bodies == [b"one", b"two"]
    assert encoded == ["one", "two"]  # once each, not once per subscriber
    for session in sessions:
        await broker.end_session(session)


async def test_acking_topic_messages_past_max_unacked_does_not_end_the_connection():
    broker = await _broker()  # stomp.max_unacked = 3
    session = await _connect(broker)
    await _written(session)  # CONNECTED
    await session.receive(
        encode_frame(
            "SUBSCRIBE",
            [("id", "s"), ("destination", "/topic/chat:acks"), ("ack", "client-individual")],
        )
    )
    for n in range(5):
        await broker.pubsub.publish("chat:acks", f"m{n}")
    messages = [f for f in await _written(session) if f.command == "MESSAGE"]
    assert [f.body for f in messages] == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    for n, message in enumerate(messages):  # the two oldest are no longer held: still fine
        await session.receive(
            encode_frame("ACK", [("id", message.get("ack") or ""), ("receipt", f"r{n}")])
        )
    frames = await _written(session)
    assert [f.command for f in frames] == ["RECEIPT"] * 5
    assert not session.closed
    # An id this connection was never sent is still an error.
    await session.receive(encode_frame("ACK", [("id", "nope-1")]))
    errors = [f for f in await _written(session) if f.command == "ERROR"]
    assert [f.get("message") for f in errors] == ["unknown message"]
    await broker.end_session(session)


async def _broker_with(clock: Callable[[], float] = time.monotonic, **stomp: Any) -> StompBroker:
    config = replace(Config(), stomp=replace(StompSettings(), **stomp))
    engine = MemoryBroker()
    await engine.start()
    pubsub = PubSub(config, engine, MemoryPresenceStore())
    return StompBroker(config, pubsub, Authenticator(config), clock=clock)


async def test_a_send_past_a_queue_budget_is_an_error_naming_the_key_and_keeps_the_rest():
    size = 256 + 1000  # a message's overhead and body (a raw SEND forwards no header)
    broker = await _broker_with(max_queue_bytes=3 * size, max_total_queue_bytes=5 * size)
    sender = await _connect(broker)
    for n in range(3):
        await sender.receive(
            encode_frame("SEND", [("destination", "/queue/a"), ("receipt", f"r{n}")], b"x" * 1000)
        )
    await sender.receive(
        encode_frame("SEND", [("destination", "/queue/a"), ("receipt", "r3")], b"x" * 1000)
    )
    frames = await _written(sender)
    assert [f.command for f in frames] == ["CONNECTED", "RECEIPT", "RECEIPT", "RECEIPT", "ERROR"]
    error = frames[-1]
    assert error.get("message") == "queue full"
    assert error.get("receipt-id") == "r3"
    assert "stomp.max_queue_bytes" in error.body.decode()
    assert sender.closed
    assert broker.counters["limit_queue_bytes"] == 1
    await broker.end_session(sender)
    other = await _connect(broker)
    for n in range(3):
        await other.receive(encode_frame("SEND", [("destination", f"/queue/b{n}")], b"x" * 1000))
    frames = await _written(other)
    assert frames[-1].command == "ERROR"
    assert "stomp.max_total_queue_bytes" in frames[-1].body.decode()
    assert broker.queues.bytes == 5 * size
    await broker.end_session(other)
    # Everything acknowledged is still there for a consumer.
    consumer = await _connect(broker)
    await consumer.receive(encode_frame("SUBSCRIBE", [("id", "1"), ("destination", "/queue/a")]))
    messages = [f for f in await _written(consumer) if f.command == "MESSAGE"]
    assert len(messages) == 3
    assert broker.queues.bytes == 2 * size
    await broker.end_session(consumer)
    await broker.shutdown("done", grace=0.1)


async def _send(session: StompSession, queue: str, count: int) -> list[Frame]:
    """SEND ``count`` messages of 1000 bytes to ``queue`` with receipts; what came back."""
    for n in range(count):
        await session.receive(
            encode_frame("SEND", [("destination", queue), ("receipt", f"r{n}")], b"x" * 1000)
        )
    return await _written(session)


async def test_connections_from_one_address_draw_from_one_share_that_outlives_them():
    size = 256 + 1000  # a message's overhead and body (a raw SEND forwards no header)
    broker = await _broker_with(max_client_queue_bytes=3 * size)
    address = "198.51.100.7"
    # Two connections open at once from one address: one share between them.
    first = await _connect(broker, address)
    second = await _connect(broker, address)
    assert [f.command for f in await _send(first, "/queue/a", 2)][1:] == ["RECEIPT"] * 2
    frames = await _send(second, "/queue/b", 2)
    assert [f.command for f in frames] == ["CONNECTED", "RECEIPT", "ERROR"]
    assert frames[-1].get("message") == "queue full"
    assert f"the messages sent from {address} hold {3 * size} bytes" in frames[-1].body.decode()
    assert "stomp.max_client_queue_bytes" in frames[-1].body.decode()
    assert not first.closed
    await broker.end_session(first)
    await broker.end_session(second)
    # The share outlives them: a new connection from that address is refused at once ...
    again = await _connect(broker, address)
    frames = await _send(again, "/queue/c", 1)
    assert [f.command for f in frames] == ["CONNECTED", "ERROR"]
    assert "stomp.max_client_queue_bytes" in frames[-1].body.decode()
    await broker.end_session(again)
    assert broker.counters["limit_client_queue_bytes"] == 2
    # ... while one from another address sends its own share.
    other = await _connect(broker, "203.0.113.9")
    assert [f.command for f in await _send(other, "/queue/c", 3)][1:] == ["RECEIPT"] * 3
    await broker.end_session(other)
    # Acknowledged and consumed, the address's messages free its share; it is forgotten.
    consumer = await _connect(broker, "192.0.2.50")
    await consumer.receive(
        encode_frame(
            "SUBSCRIBE", [("id", "a"), ("destination", "/queue/a"), ("ack", "client-individual")]
        )
    )
    held = [f for f in await _written(consumer) if f.command == "MESSAGE"]
    assert len(held) == 2
    assert broker.queues.shares.held(address) == 3 * size  # unacknowledged: still counted
    for message in held:
        await consumer.receive(encode_frame("ACK", [("id", message.get("ack") or "")]))
    assert broker.queues.shares.held(address) == size
    await consumer.receive(encode_frame("SUBSCRIBE", [("id", "b"), ("destination", "/queue/b")]))
    assert address not in broker.queues.shares
    await broker.end_session(consumer)
    back = await _connect(broker, address)
    assert [f.command for f in await _send(back, "/queue/d", 3)][1:] == ["RECEIPT"] * 3
    await broker.end_session(back)
    await broker.shutdown("done", grace=0.1)


async def test_expiry_headers_are_read_and_malformed_ones_are_errors():
    broker = await _broker_with()
    session = await _connect(broker)
    await session.receive(
        encode_frame("SEND", [("destination", "/queue/e"), ("expiration", "soon")], b"x")
    )
    frames = await _written(session)
    assert frames[-1].command == "ERROR"
    assert frames[-1].get("message") == "bad expiry header"
    assert "expiration 'soon' is not a whole number of milliseconds" in frames[-1].body.decode()
    await broker.end_session(session)
    session = await _connect(broker)
    await session.receive(
        encode_frame("SEND", [("destination", "/queue/e"), ("expires", "1")], b"gone")
    )  # 1 ms after the epoch: long past, dropped
    await session.receive(
        encode_frame("SEND", [("destination", "/queue/e"), ("expiration", "60000")], b"kept")
    )
    await session.receive(encode_frame("SUBSCRIBE", [("id", "1"), ("destination", "/queue/e")]))
    messages = [f for f in await _written(session) if f.command == "MESSAGE"]
    assert [m.body for m in messages] == [b"kept"]
    assert messages[0].get("expiration") == "60000"  # passed on, as brokers do
    await broker.end_session(session)
    await broker.shutdown("done", grace=0.1)


async def test_queue_names_with_control_characters_are_refused():
    broker = await _broker_with()
    for command, headers in [
        ("SEND", [("destination", "/queue/a\x01b")]),
        ("SUBSCRIBE", [("id", "1"), ("destination", "/queue/a\tb")]),
        ("SEND", [("destination", "/queue/" + "q" * 256)]),
    ]:
        session = await _connect(broker)
        await session.receive(encode_frame(command, headers, b"x"))
        error = (await _written(session))[-1]
        assert error.command == "ERROR"
        assert error.get("message") == "bad destination"
        assert "queue name" in error.body.decode()
        assert session.closed
        await broker.end_session(session)
    assert len(broker.queues) == 0


async def test_reserved_header_names_in_any_case_are_not_passed_on_as_tags():
    broker = await _broker_with()
    session = await _connect(broker)
    await session.receive(
        encode_frame("SUBSCRIBE", [("id", "s"), ("destination", "/topic/chat:tags")])
    )
    await session.receive(
        encode_frame(
            "SEND",
            [
                ("destination", "/topic/chat:tags"),
                ("Content-Length", "999"),
                ("Destination", "/topic/chat:elsewhere"),
                ("ORBITER-OFFSET", "7"),
                ("kind", "mine"),
            ],
            b"hi",
        )
    )
    (message,) = [f for f in await _written(session) if f.command == "MESSAGE"]
    names = [name for name, _ in message.headers]
    assert "kind" in names
    assert not {"Content-Length", "Destination", "ORBITER-OFFSET"} & set(names)
    assert message.get("destination") == "/topic/chat:tags"
    assert message.body == b"hi"
    await broker.end_session(session)


async def test_acknowledged_queue_messages_free_their_bytes_and_nacked_ones_keep_them():
    broker = await _broker_with()
    producer = await _connect(broker)
    for n in range(4):
        await producer.receive(encode_frame("SEND", [("destination", "/queue/acks")], b"m%d" % n))
    size = 256 + 2
    assert broker.queues.bytes == 4 * size
    consumer = await _connect(broker)
    await consumer.receive(
        encode_frame("SUBSCRIBE", [("id", "1"), ("destination", "/queue/acks"), ("ack", "client")])
    )
    messages = [f for f in await _written(consumer) if f.command == "MESSAGE"]
    assert len(messages) == 4
    assert broker.queues.bytes == 4 * size  # held until acknowledged
    await consumer.receive(encode_frame("ACK", [("id", messages[1].get("ack") or "")]))
    assert broker.queues.bytes == 2 * size  # "client" mode: up to and including it
    await consumer.receive(encode_frame("NACK", [("id", messages[2].get("ack") or "")]))
    assert broker.queues.bytes == 2 * size  # back in the queue, still counted
    await broker.end_session(consumer)
    assert broker.queues.bytes == 2 * size
    await broker.end_session(producer)
    await broker.shutdown("done", grace=0.1)


async def test_one_timer_sweeps_while_queues_hold_bytes_and_stops_after(
    manual_clock: ManualClock,
) -> None:
    broker = await _broker_with(clock=manual_clock)
    session = await _connect(broker)
    for n in range(3):
        await session.receive(
            encode_frame(
                "SEND", [("destination", f"/queue/t{n}"), ("expiration", "2500")], b"x" * 100
            )
        )
    assert broker.queues.bytes > 0
    assert len(broker.queues) == 3
    await manual_clock.advance(2.99)  # the sweeps at 1 s and 2 s find nothing due yet
    assert len(broker.queues) == 3
    assert broker._sweep is not None
    await manual_clock.advance(0.02)  # the sweep at 3 s, one second after the one before
    assert broker.queues.bytes == 0
    assert len(broker.queues) == 0
    assert broker._sweep is None  # nothing held: no timer
    await broker.end_session(session)


@contextlib.asynccontextmanager
async def _running(
    clock: ManualClock,
    heart_beat: str | None,
    broker: StompBroker | None = None,
    connect: tuple[tuple[str, str], ...] = (),
    **stomp: Any,
) -> AsyncIterator[tuple[StompSession, list[bytes]]]:
    """A session as a transport runs it (its keepalive task, a reader), CONNECTed with
    ``heart-beat: heart_beat`` and ``connect``'s headers (no CONNECT if None); the list
    fills with what it writes."""
    if broker is None:
        broker = await _broker_with(clock=clock, **stomp)
    session = broker.new_session(peer="test", transport="test")
    written: list[bytes] = []

    async def read() -> None:
        pull = Pull(session.outbox)
        while items := await pull.take():
            written.extend(items)

    tasks = [asyncio.create_task(read()), asyncio.create_task(session.keepalive())]
    if heart_beat is not None:
        headers = [("accept-version", "1.2"), ("host", "x"), ("heart-beat", heart_beat)]
        headers += connect
        await session.receive(encode_frame("CONNECT", headers))
    await clock.settle()
    try:
        yield session, written
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await broker.end_session(session)


def _errors(written: list[bytes]) -> list[str | None]:
    frames = FrameParser(version="1.2").feed(b"".join(written))
    return [f.get("message") for f in frames if f.command == "ERROR"]


async def test_heart_beats_go_out_every_negotiated_interval(manual_clock: ManualClock) -> None:
    # The broker offers 200 ms, the client wants 100: every max(200, 100) ms.
    async with _running(manual_clock, "0,100", heartbeat_send=0.2) as (session, written):
        assert session.send_interval == 200
        await manual_clock.advance(0.15)
        assert written.count(b"\n") == 0
        await manual_clock.advance(0.1)
        assert written.count(b"\n") == 1
        await manual_clock.advance(0.8)
        assert written.count(b"\n") == 5
        assert not session.closed


async def test_a_client_silent_for_twice_the_interval_is_dropped(
    manual_clock: ManualClock,
) -> None:
    # The client offers 100 ms, the broker wants 300: the client must beat within 300 ms.
    running = _running(manual_clock, "100,0", heartbeat_send=0, heartbeat_receive=0.3)
    async with running as (session, written):
        assert session.receive_interval == 300
        await manual_clock.advance(0.5)
        await session.receive(b"\n")  # a beat: silent from now on
        await manual_clock.advance(0.55)
        assert not session.closed
        await manual_clock.advance(0.2)
        assert session.closed
        assert _errors(written) == ["heart-beat timeout"]


async def test_a_connection_that_never_connects_is_dropped_at_the_connect_timeout(
    manual_clock: ManualClock,
) -> None:
    async with _running(manual_clock, None, connect_timeout=0.5) as (session, written):
        await manual_clock.advance(0.49)
        assert not session.closed
        await manual_clock.advance(0.02)
        assert session.closed
        assert _errors(written) == ["connect timeout"]


async def test_a_connection_ends_when_its_token_expires(manual_clock: ManualClock) -> None:
    config = replace(Config(), auth=AuthSettings(secret=SECRET))
    engine = MemoryBroker()
    await engine.start()
    pubsub = PubSub(config, engine, MemoryPresenceStore())
    broker = StompBroker(config, pubsub, Authenticator(config), clock=manual_clock)
    # A token's exp is whole seconds: this one runs out 59 to 60 s from now.
    passcode = (("passcode", token("alice", ttl=60)),)
    async with _running(manual_clock, "0,0", broker, passcode) as (session, written):
        assert session.user == "alice"
        await manual_clock.advance(58.9)
        assert not session.closed
        await manual_clock.advance(1.2)
        assert session.closed
        assert _errors(written) == ["token expired"]


async def _written_now(session: StompSession, clock: ManualClock) -> list[Frame]:
    """What the session wrote so far, read without waiting (the clock stands still)."""
    pull = _PULLS.get(session)
    if pull is None:
        pull = _PULLS[session] = Pull(session.outbox)
    take = asyncio.ensure_future(pull.take())
    await clock.settle()
    if not take.done():
        take.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await take
        return []
    return FrameParser(version="1.2").feed(b"".join(take.result()))


async def test_expired_queue_messages_are_not_delivered_and_their_bytes_and_queues_are_freed(
    manual_clock: ManualClock,
) -> None:
    # Two with ActiveMQ's expires (epoch ms, 13 digits), two with RabbitMQ's expiration (ms);
    # the header is passed on, so it counts (160 bytes and its name and value).
    body = b"o" * 1000
    size = 256 + len(body)
    four = 2 * (size + 160 + len("expiration1500")) + 2 * (size + 160 + len("expires") + 13)
    broker = await _broker_with(
        clock=manual_clock, max_total_queue_bytes=four, max_queues=5, message_ttl=30
    )
    sender = await _connect(broker)
    in_1_5_s = str(int(time.time() * 1000) + 1500)
    assert len(in_1_5_s) == 13
    for n, expiry in enumerate([("expiration", "1500"), ("expires", in_1_5_s)] * 2):
        headers = [("destination", f"/queue/old-{n}"), expiry, ("receipt", f"r{n}")]
        await sender.receive(encode_frame("SEND", headers, body))
    receipts = [f.get("receipt-id") for f in await _written_now(sender, manual_clock)]
    assert receipts == [None, "r0", "r1", "r2", "r3"]  # after CONNECTED
    assert broker.queues.bytes == four
    # Full: a fifth message is refused.
    probe = await _connect(broker)
    await probe.receive(encode_frame("SEND", [("destination", "/queue/new-0")], b"n" * 1000))
    [error] = [f for f in await _written_now(probe, manual_clock) if f.command == "ERROR"]
    assert "stomp.max_total_queue_bytes" in error.body.decode()
    # Past their deadline (1.5 s), but the sweep (every second) has not run since.
    await manual_clock.advance(1.95)
    assert broker.queues.bytes == four
    await manual_clock.advance(0.1)  # the sweep at 2 s
    # The bytes are back, and the four old queues are forgotten (max_queues = 5).
    assert broker.queues.bytes == 0
    for n in range(4):
        headers = [("destination", f"/queue/new-{n}"), ("receipt", f"n{n}")]
        await sender.receive(encode_frame("SEND", headers, b"n"))
    frames = await _written_now(sender, manual_clock)
    assert [f.get("receipt-id") for f in frames] == ["n0", "n1", "n2", "n3"]
    # Nothing expired is delivered late.
    consumer = await _connect(broker)
    await consumer.receive(
        encode_frame("SUBSCRIBE", [("id", "old"), ("destination", "/queue/old-0")])
    )
    await consumer.receive(
        encode_frame("SUBSCRIBE", [("id", "new"), ("destination", "/queue/new-0")])
    )
    messages = [f for f in await _written_now(consumer, manual_clock) if f.command == "MESSAGE"]
    assert [(m.get("subscription"), m.body) for m in messages] == [("new", b"n")]
    for session in (sender, probe, consumer):
        await broker.end_session(session)
