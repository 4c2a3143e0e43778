"""The Redis engine's bounded wait for a flushed pipeline's answer (``engine.commit_wait``).

``Broker.flush`` sends the read's pipeline and, when it all went to one link, waits at
most ``commit_wait`` for Redis's answer, reading the link's socket behind its transport
(``engine/redis_wait.py``): if the answer comes by then, the publishers are told before
the flush returns (the fast path answers in the read's own iteration); if not, the loop
goes on and the transport reads it as without the wait. Every answer is told exactly
once, in order, whichever side read it; at most one wait per loop iteration (shared by a
sharded broker's shards); never on a TLS connection. Against real ``redis-server`` s,
on asyncio's default loop and on uvloop (both read the socket their own way).
"""

from __future__ import annotations

import asyncio
import datetime
import os
import random
import signal
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError

from orbiter.config.settings import Config
from orbiter.engine.base import HistoryPolicy
from orbiter.engine.redis import RedisBroker
from orbiter.engine.redis_shards import ShardedRedisBroker, shard_of
from orbiter.engine.redis_wait import PAUSE_AFTER_TIMEOUT, SocketReader, reader_for
from orbiter.engine.redis_wire import CommandLink, pack_command
from orbiter.http.fast_publish import FastPublishProtocol, _DateHeader
from orbiter.model import Publication
from orbiter.node import Node
from tests.engine.test_sqlite_commit_wait import answers
from tests.engine.test_sqlite_flush import Ticker, publish_request
from tests.support.redis_server import RedisServer
from tests.support.standins import StandInTakeover, StandInTransport
from tests.support.waiting import until

POLICY = HistoryPolicy(size=100, ttl=60.0, meta_ttl=600.0)
#: Longer than any answer of a local Redis takes: the wait is over when the answer is.
GENEROUS = 5.0

Outcome = Publication | BaseException
Scenario = Callable[[], Coroutine[Any, Any, None]]
#: Each scenario runs on both loops a server may run on.
LOOPS = pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])


async def _started(url: str, prefix: str, commit_wait: float) -> RedisBroker:
    broker = RedisBroker(url, prefix=prefix, commit_wait=commit_wait)
    broker.set_handlers(lambda _: None, lambda _: None)
    await broker.start()
    return broker


async def _warm(broker: RedisBroker, channel: str = "warm") -> None:
    """Make the publisher's link (the first pipeline's waits for it: no wait then)."""
    await broker.publish(channel, "warm", POLICY)
    await asyncio.sleep(0)  # the next iteration: its first flush may wait


# ---------------------------------------------------------------- answered within the flush


@LOOPS
def test_a_flushed_pipeline_is_answered_within_the_flush(
    run: Callable[[Awaitable[None]], None], redis_server: RedisServer, redis_prefix: str
) -> None:
    async def scenario() -> None:
        broker = await _started(redis_server.url, redis_prefix, GENEROUS)
        try:
            await _warm(broker)
            told: list[Outcome] = []
            for i in range(3):
                broker.publish_then("c", i, POLICY, None, told.append)
            assert told == []
            broker.flush()
            # Within the flush: no loop iteration between the read and the answers.
            assert [o.offset for o in told if isinstance(o, Publication)] == [1, 2, 3]
            await asyncio.sleep(0.05)
            assert len(told) == 3  # the transport did not hand them over again
            # The next iteration's first flush waits again.
            broker.publish_then("c", 3, POLICY, None, told.append)
            broker.flush()
            assert len(told) == 4
            assert told[3].offset == 4  # type: ignore[union-attr]
        finally:
            await broker.close()

    run(scenario())


@LOOPS
def test_without_the_wait_the_answer_is_read_by_the_transport(
    run: Callable[[Awaitable[None]], None], redis_server: RedisServer, redis_prefix: str
) -> None:
    """``commit_wait = 0``: the flush sends the pipeline and returns; the answer is told
    once the loop reads the socket, though it is there long before."""

    async def scenario() -> None:
        broker = await _started(redis_server.url, redis_prefix, 0.0)
        try:
            await _warm(broker)
            told: list[Outcome] = []
            broker.publish_then("c", 1, POLICY, None, told.append)
            broker.flush()
            time.sleep(0.05)  # noqa: ASYNC251 (the loop held: Redis answers meanwhile)
            assert told == []  # sent, not waited for
            await until(lambda: bool(told))
            (pub,) = told
            assert isinstance(pub, Publication)
            assert pub.offset == 1
        finally:
            await broker.close()

    run(scenario())


@LOOPS
def test_the_fast_path_answers_a_read_in_its_own_iteration(
    run: Callable[[Awaitable[None]], None], redis_server: RedisServer, redis_prefix: str
) -> None:
    async def scenario() -> None:
        broker = RedisBroker(redis_server.url, prefix=redis_prefix, commit_wait=GENEROUS)
        node = Node(Config(), broker=broker)
        await node.start()
        try:
            await _warm(broker)
            transport = StandInTransport()
            protocol = FastPublishProtocol(StandInTakeover(transport), node, _DateHeader())  # type: ignore[arg-type]
            protocol.connection_made(transport)  # type: ignore[arg-type]
            bad = publish_request(0).replace(b'"data"', b'"datA"')  # 400: 'data' is missing
            protocol.data_received(bad + publish_request(1) + publish_request(2))
            assert answers(transport) == [(400, None), (200, 1), (200, 2)]  # within the read
            await asyncio.sleep(0)
            protocol.data_received(publish_request(3) + bad + publish_request(4))
            assert answers(transport)[3:] == [(200, 3), (400, None), (200, 4)]
            protocol.connection_lost(None)
        finally:
            await node.close()

    run(scenario())


async def test_a_long_pipeline_on_one_link_is_waited_for_whole(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    """More than one script call (``PUBLISH_MANY_MAX`` each), on the one link: all waited
    for, their answers possibly read in several reads."""
    broker = await _started(redis_server.url, redis_prefix, GENEROUS)
    try:
        await _warm(broker)
        told: list[Outcome] = []
        for i in range(300):
            broker.publish_then(f"c{i % 7}", "x" * 200, POLICY, None, told.append)
        broker.flush()
        assert len(told) == 300
        assert all(isinstance(o, Publication) for o in told)
    finally:
        await broker.close()


async def test_only_the_first_flush_of_an_iteration_waits(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    broker = await _started(redis_server.url, redis_prefix, GENEROUS)
    try:
        await _warm(broker)
        told: list[Outcome] = []
        broker.publish_then("c", "first read", POLICY, None, told.append)
        broker.flush()
        assert len(told) == 1
        broker.publish_then("c", "second read", POLICY, None, told.append)
        broker.flush()  # sent, not waited for: this iteration waited already
        assert len(told) == 1
        await until(lambda: len(told) == 2)
        await asyncio.sleep(0)
        broker.publish_then("c", "a later iteration", POLICY, None, told.append)
        broker.flush()
        assert len(told) == 3
        assert [o.offset for o in told if isinstance(o, Publication)] == [1, 2, 3]
    finally:
        await broker.close()


async def test_a_sharded_brokers_shards_wait_once_an_iteration_in_all(
    redis_server: RedisServer, second_redis_server: RedisServer, redis_prefix: str
) -> None:
    broker = ShardedRedisBroker(
        [redis_server.url, second_redis_server.url], prefix=redis_prefix, commit_wait=GENEROUS
    )
    broker.set_handlers(lambda _: None, lambda _: None)
    await broker.start()
    try:
        channels = {shard_of(f"c{i}", 2): f"c{i}" for i in range(20)}
        for channel in channels.values():
            await broker.publish(channel, "warm", POLICY)
        await asyncio.sleep(0)
        told: dict[int, list[Outcome]] = {0: [], 1: []}
        for shard, channel in channels.items():
            broker.publish_then(channel, "x", POLICY, None, told[shard].append)
        broker.flush()
        # The first shard's flush waited; the second's sent its pipeline, not waited.
        assert [len(told[0]), len(told[1])] == [1, 0]
        await until(lambda: len(told[1]) == 1)
        assert all(isinstance(o[0], Publication) for o in told.values())
    finally:
        await broker.close()


# ---------------------------------------------------------------- bounded


@LOOPS
def test_a_redis_that_does_not_answer_costs_the_loop_the_bound_and_is_answered_later(
    run: Callable[[Awaitable[None]], None], redis_prefix: str
) -> None:
    """A stopped ``redis-server`` (SIGSTOP): the flush returns after the bound, the loop
    runs on; once it goes on (SIGCONT), each publication is answered once, in order."""
    server = RedisServer()

    async def scenario() -> None:
        broker = await _started(server.url, redis_prefix, 0.01)
        try:
            await _warm(broker)
            process = server.process
            assert process is not None
            told: list[Outcome] = []
            os.kill(process.pid, signal.SIGSTOP)
            try:
                for i in range(3):
                    broker.publish_then("c", i, POLICY, None, told.append)
                started = time.monotonic()
                broker.flush()
                waited = time.monotonic() - started
                assert told == []
                assert waited >= 0.009  # it did wait (the bound, with the clock's grain)
                assert waited < 0.2  # the bound (0.01 s), not Redis's time
                ticker = Ticker()
                await asyncio.sleep(0.1)
                assert ticker.ticks > 10  # the loop goes on meanwhile
                # Queued behind the pipeline in flight, and a flush that does not wait
                # (a wait ran out just now: none for a while).
                broker.publish_then("c", 3, POLICY, None, told.append)
                started = time.monotonic()
                broker.flush()
                assert time.monotonic() - started < 0.005
                assert told == []
            finally:
                os.kill(process.pid, signal.SIGCONT)
            await until(lambda: len(told) == 4)
            await asyncio.sleep(0.05)
            ticker.stop()
            assert [o.offset for o in told if isinstance(o, Publication)] == [1, 2, 3, 4]
        finally:
            await broker.close()

    try:
        run(scenario())
    finally:
        server.close()


async def test_after_a_wait_ran_out_the_next_iterations_do_not_wait_for_a_while(
    redis_prefix: str,
) -> None:
    server = RedisServer()
    try:
        broker = await _started(server.url, redis_prefix, 0.005)
        try:
            await _warm(broker)
            process = server.process
            assert process is not None
            told: list[Outcome] = []
            os.kill(process.pid, signal.SIGSTOP)
            try:
                broker.publish_then("c", 0, POLICY, None, told.append)
                broker.flush()  # waits 5 ms, for nothing
            finally:
                os.kill(process.pid, signal.SIGCONT)
            await until(lambda: len(told) == 1)
            await asyncio.sleep(0)
            broker.publish_then("c", 1, POLICY, None, told.append)
            broker.flush()
            assert len(told) == 1  # paused: sent, not waited for
            await until(lambda: len(told) == 2)
            await asyncio.sleep(PAUSE_AFTER_TIMEOUT)
            broker.publish_then("c", 2, POLICY, None, told.append)
            broker.flush()
            assert len(told) == 3  # waited again
        finally:
            await broker.close()
    finally:
        server.close()


# ---------------------------------------------------------------- order, exactly once


@LOOPS
def test_answers_stay_in_order_and_once_across_waited_and_unwaited_pipelines(
    run: Callable[[Awaitable[None]], None], redis_server: RedisServer, redis_prefix: str
) -> None:
    """Reads of many sizes, flushed or not, several in an iteration, with a bound about
    as long as Redis's answer (so both the wait and the transport read answers, some
    answers split between them): every publication told once, each channel's offsets in
    the order queued."""
    rng = random.Random(16)

    async def scenario() -> None:
        broker = await _started(redis_server.url, redis_prefix, 0.0001)
        try:
            await _warm(broker)
            told: dict[str, list[tuple[int, Outcome]]] = {}
            queued = 0
            for _ in range(300):
                for _ in range(rng.choice((1, 1, 2, 3))):  # reads in this iteration
                    for _ in range(rng.choice((1, 2, 4, 40, 200))):
                        channel = f"c{rng.randrange(4)}"
                        seen = told.setdefault(channel, [])
                        index = queued
                        broker.publish_then(channel, index, POLICY, None, _appender(seen, index))
                        queued += 1
                    if rng.random() < 0.8:
                        broker.flush()
                await asyncio.sleep(0)
            await until(lambda: sum(map(len, told.values())) >= queued)
            await asyncio.sleep(0.05)
            assert sum(map(len, told.values())) == queued  # none twice
            for seen in told.values():
                indexes = [i for i, _ in seen]
                assert indexes == sorted(indexes)  # told in the order queued
                offsets = [o.offset for _, o in seen if isinstance(o, Publication)]
                assert len(offsets) == len(seen)
                assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
        finally:
            await broker.close()

    run(scenario())


def _appender(seen: list[tuple[int, Outcome]], index: int) -> Callable[[Outcome], None]:
    return lambda outcome: seen.append((index, outcome))


# ---------------------------------------------------------------- a lost connection


class ClosingPeer:
    """A stand-in for Redis on a thread of its own (never blocked by the loop's wait): it
    says OK to redis-py's handshake, then, at a ``CLOSE`` command, sends ``last`` (part
    of a reply, or nothing) and closes the connection."""

    def __init__(self, last: bytes) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._last = last
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        connection, _ = self._listener.accept()
        with connection:
            while True:
                data = connection.recv(65536)
                if not data:
                    return
                connection.sendall(b"+OK\r\n" * data.count(b"SETINFO"))
                if b"CLOSE" in data:
                    connection.sendall(self._last)
                    return

    def close(self) -> None:
        self._listener.close()
        self._thread.join(5)


@LOOPS
@pytest.mark.parametrize("last", [b"", b"$5\r\nhel"], ids=["nothing", "part of a reply"])
def test_the_end_of_the_stream_is_left_to_the_transport_to_report(
    run: Callable[[Awaitable[None]], None], last: bytes
) -> None:
    """Redis closes the connection during the wait: the wait reads what came before the
    end, never the end itself (it returns at once, not after the bound); the transport
    finds it and reports the connection lost: the command's handler gets a
    ``ConnectionError``, once."""
    peer = ClosingPeer(last)

    async def scenario() -> None:
        link = await CommandLink.open(Connection(host="127.0.0.1", port=peer.port, protocol=2))
        got: list[object] = []
        link.send(pack_command(("CLOSE",)), [got.append])
        assert link.waitable
        started = time.monotonic()
        if last:
            assert link.read_now(GENEROUS)  # the part of the reply, handed over
        assert not link.read_now(GENEROUS)  # the end: left to the transport
        assert time.monotonic() - started < 1.0
        assert got == []
        await until(lambda: bool(got))
        await asyncio.sleep(0.05)
        assert len(got) == 1
        assert isinstance(got[0], RedisConnectionError)
        assert not link.usable

    try:
        run(scenario())
    finally:
        peer.close()


async def test_an_error_the_read_consumed_is_reported_as_the_connection_lost(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    """An error between the poll and the read is consumed by the read: the link reports
    it (its waiting handlers get a ``ConnectionError``), never loses it."""
    broker = await _started(redis_server.url, redis_prefix, 0.0)
    try:
        await _warm(broker)
        (link,) = broker._publisher._links.values()
        reader = link._reader
        assert reader is not None

        class Failing:
            def wait(self, timeout: float) -> bool:
                return True

            def read(self) -> OSError:
                return ConnectionResetError(104, "Connection reset by peer")

        got: list[object] = []
        link._waiting.append(got.append)
        link._reader = Failing()  # type: ignore[assignment]
        assert link.read_now(0.01)
        assert len(got) == 1
        assert isinstance(got[0], RedisConnectionError)
        assert "reset" in str(got[0])
        assert not link.usable
    finally:
        await broker.close()


# ---------------------------------------------------------------- which sockets


@LOOPS
def test_only_plain_sockets_are_read_behind_their_transport(
    run: Callable[[Awaitable[None]], None], tmp_path: Path
) -> None:
    """TCP and Unix stream sockets of the loop's own transports are; a TLS transport's
    (``rediss://``: the bytes on the socket are not the stream) never is."""
    context = _tls_server_context(tmp_path)

    async def scenario() -> None:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1)
            writer.close()

        tcp = await asyncio.start_server(accepted, "127.0.0.1", 0)
        tls = await asyncio.start_server(accepted, "127.0.0.1", 0, ssl=context)
        path = str(tmp_path / "s.sock")
        unix = await asyncio.start_unix_server(accepted, path)
        try:
            _, plain = await asyncio.open_connection(*tcp.sockets[0].getsockname()[:2])
            assert reader_for(plain.transport) is not None
            _, local = await asyncio.open_unix_connection(path)
            assert reader_for(local.transport) is not None
            client = ssl.create_default_context()
            client.check_hostname = False
            client.verify_mode = ssl.CERT_NONE
            _, secure = await asyncio.open_connection(*tls.sockets[0].getsockname()[:2], ssl=client)
            assert reader_for(secure.transport) is None
            for writer in (plain, local, secure):
                writer.close()
        finally:
            for server in (tcp, tls, unix):
                server.close()

    run(scenario())


def _tls_server_context(directory: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


def test_a_link_without_a_plain_socket_is_never_waited_for() -> None:
    link = CommandLink()
    assert not link.waitable  # not connected
    assert not link.read_now(0.01)


def test_a_socket_readers_wait_is_bounded_to_the_microsecond_range() -> None:
    """``ppoll``'s timeout is kept below a millisecond (poll and epoll would round it up to
    one), and a wait of a second or more leaves no second behind for the next wait."""
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)  # (as a transport's socket is)
    try:
        reader = SocketReader(theirs.fileno())
        started = time.monotonic()
        assert not reader.wait(0.0003)
        assert 0.0002 <= time.monotonic() - started < 0.05
        ours.send(b"x")
        assert reader.wait(1.5)  # at once: data is there
        assert reader.read() == b"x"
        started = time.monotonic()
        assert not reader.wait(0.0003)
        assert time.monotonic() - started < 0.5  # not 1.5 s: the seconds were reset
        assert reader.read() is None  # nothing: EAGAIN, not an error
        ours.close()
        started = time.monotonic()
        assert not reader.wait(1.0)  # a hang-up: at once, and left to the transport
        assert time.monotonic() - started < 0.5
    finally:
        ours.close()
        theirs.close()
