"""A native WebSocket read of ``publish`` commands is handled at once, in ``data_received``.

No task and no coroutine for a read of publishes whose rules need no await
(:meth:`ClientSession.receive_now`); every rule of the coroutine path applies
there (the publish rate, a reserved channel, the channel's permission, the
channel limit, an engine that cannot keep it), and a read that holds anything
else falls back to the coroutine path from that command on, with the replies
and effects of the coroutine path, in order. The replies to one read are one
transport write.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import struct
import tomllib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from orbiter.auth.hooks import AppHooks, HookAnswer, HookDenied
from orbiter.bench.spawn import BENCH_CONFIG
from orbiter.config.settings import config_from_dict
from orbiter.engine.sqlite import SqliteBroker
from orbiter.node import Node
from orbiter.protocol.native import DisconnectCode, ErrorCode
from orbiter.transports.websocket import NativeWebSocket, _Endpoint
from tests.support.standins import StandInTransport

#: A bucket that does not refill within a test: the 9th publish of a connection is refused.
LIMITS = {"publish_rate": 0.001, "publish_burst": 8, "max_channels": 3, "frame_rate": 10_000}
CHANNELS = [
    {"match": "open:*", "client_publish": True},
    {"match": "members:*", "client_publish": True, "subscribe": "hook"},
    {"match": "hook:*", "client_publish": True, "publish_hook": True},
]
HOOKS = {"publish_url": "http://127.0.0.1:9/publish", "subscribe_url": "http://127.0.0.1:9/sub"}


class RecordingTransport(StandInTransport):
    """Keeps each write apart, to count them."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        super().write(data)
        self.writes.append(bytes(data))

    def abort(self) -> None:
        self.closed = True


def frame(command: dict[str, Any] | bytes, *more: dict[str, Any]) -> bytes:
    """One masked text frame: ``command`` (bytes: as they are), then ``more``, a line each."""
    lines = [command if isinstance(command, bytes) else orjson.dumps(command)]
    payload = b"\n".join(lines + [orjson.dumps(c) for c in more])
    mask = b"\x01\x02\x03\x04"
    n = len(payload)
    head = struct.pack("!BB", 0x81, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x81, 0xFE, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def messages(data: bytes) -> list[dict[str, Any]]:
    """The native messages in what the server wrote (unmasked text frames)."""
    out, i = [], 0
    while i < len(data):
        assert data[i] == 0x81, data[i:]
        n, i = data[i + 1], i + 2
        if n == 126:
            (n,), i = struct.unpack("!H", data[i : i + 2]), i + 2
        elif n == 127:
            (n,), i = struct.unpack("!Q", data[i : i + 8]), i + 8
        out += [orjson.loads(line) for line in data[i : i + n].split(b"\n")]
        i += n
    return out


def publish(id_: int, channel: str, data: Any = "x") -> dict[str, Any]:
    return {"id": id_, "op": "publish", "channel": channel, "data": data}


def memory_node(**limits: Any) -> Node:
    return Node(
        config_from_dict(
            {
                "engine": {"kind": "memory"},
                "limits": {**LIMITS, **limits},
                "channel": CHANNELS,
                "hooks": HOOKS,
            }
        )
    )


class Client:
    """A NativeWebSocket on a stand-in transport, fed frames as a client sends them."""

    def __init__(self, endpoint: _Endpoint) -> None:
        self.transport = RecordingTransport()
        self.session = endpoint.node.new_session("127.0.0.1")
        self.socket = NativeWebSocket(endpoint, None, self.session, "127.0.0.1")
        self.socket.connection_made(self.transport)  # type: ignore[arg-type]
        self._read = 0

    async def settled(self) -> list[dict[str, Any]]:
        """What the server wrote since the last call, once the read's commands all ran."""
        for _ in range(2000):  # bounded
            await asyncio.sleep(0.001)
            if (
                self.socket._receiving is None
                and not self.session._unkept
                and not self.session.outbox.queued_bytes
            ):
                break
        await asyncio.sleep(0.01)
        out = bytes(self.transport.out[self._read :])
        self._read = len(self.transport.out)
        return messages(out)

    async def send(self, *frames: bytes) -> list[dict[str, Any]]:
        self.socket.data_received(b"".join(frames))
        return await self.settled()


@pytest.fixture
async def endpoint() -> AsyncIterator[_Endpoint]:
    node = memory_node()
    await node.start()
    endpoint = _Endpoint(node)
    yield endpoint
    endpoint.wheel.close()
    await node.close()


async def connected(endpoint: _Endpoint) -> Client:
    client = Client(endpoint)
    [reply] = await client.send(frame({"id": 1, "op": "connect"}))
    assert "result" in reply, reply
    return client


def replies(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The replies (not the pushes), with the epochs (random) taken out."""
    out = []
    for message in messages:
        if "id" in message:
            result = message.get("result")
            if isinstance(result, dict):
                result.pop("epoch", None)
            out.append(message)
    return out


def codes(messages: list[dict[str, Any]]) -> list[tuple[int | None, int | None]]:
    """(id, error code or None) of each reply."""
    return [(m["id"], m.get("error", {}).get("code")) for m in replies(messages)]


async def test_a_read_of_publishes_runs_at_once_without_a_task_and_is_one_write(
    endpoint: _Endpoint,
) -> None:
    client = await connected(endpoint)
    writes, tasks = len(client.transport.writes), len(asyncio.all_tasks())
    client.socket.data_received(b"".join(frame(publish(10 + i, f"open:{i % 2}")) for i in range(4)))
    assert client.socket._receiving is None
    assert len(asyncio.all_tasks()) == tasks  # no task, for the read or anything it did
    assert endpoint.node.pubsub.published == 4  # published in data_received itself
    got = await client.settled()
    assert replies(got) == [
        {"id": 10, "result": {"offset": 1}},
        {"id": 11, "result": {"offset": 1}},
        {"id": 12, "result": {"offset": 2}},
        {"id": 13, "result": {"offset": 2}},
    ]
    assert len(client.transport.writes) == writes + 1  # the read's four replies: one write


async def test_every_rule_of_a_publish_is_applied_on_the_fast_path(
    endpoint: _Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    """Each refusal, from a read of publishes alone (so from the fast path): skipping
    any rule there changes a reply or a counter."""
    client = await connected(endpoint)
    counters = endpoint.node.counters
    read = [
        publish(10, "$key:alice"),  # reserved
        publish(11, "closed:a"),  # no client_publish: denied
        publish(12, "members:a"),  # subscribers only: denied
        publish(13, "open:a"),
        publish(14, "open:b"),
        publish(15, "open:c"),
        publish(16, "open:d"),  # a 4th channel: past limits.max_channels (3)
        publish(17, "open:a"),  # the 8th publish: the burst's last
        publish(18, "open:a"),  # the 9th: too fast
    ]
    with caplog.at_level(logging.INFO, logger="orbiter.session"):
        client.socket.data_received(b"".join(frame(c) for c in read))
        assert client.socket._receiving is None  # all of it at once
        got = await client.settled()
    assert codes(got) == [
        (10, ErrorCode.PERMISSION_DENIED),
        (11, ErrorCode.PERMISSION_DENIED),
        (12, ErrorCode.PERMISSION_DENIED),
        (13, None),
        (14, None),
        (15, None),
        (16, ErrorCode.LIMIT_EXCEEDED),
        (17, None),
        (18, ErrorCode.LIMIT_EXCEEDED),
    ]
    messages_of = {m["id"]: m.get("error", {}).get("message", "") for m in got}
    assert "reserved for the server" in messages_of[10]
    assert "client_publish" in messages_of[11]
    assert "only subscribers" in messages_of[12]
    assert "limits.max_channels" in messages_of[16]
    assert "publishing too fast" in messages_of[18]
    assert counters["publish_denied"] == 2
    assert counters["limit_channels"] == 1
    assert counters["limit_publish_rate"] == 1
    assert endpoint.node.pubsub.published == 4
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 6, refused


async def test_a_mixed_read_falls_back_in_order_with_the_coroutine_paths_replies(
    endpoint: _Endpoint,
) -> None:
    """Publishes, a subscribe, a ping inside a message of publishes, a malformed command and
    refusals, one frame each (and one frame of three): the replies are the coroutine path's
    (``session.receive`` per message, on a node of its own), in order."""
    read = [
        frame(publish(10, "open:a")),
        frame({"id": 11, "op": "subscribe", "channel": "open:b"}),
        frame(publish(12, "open:b")),  # after a fall-back: at once again, to itself too
        frame(publish(13, "$x")),
        frame(b'{"id": 14, "op":'),  # malformed
        frame(publish(15, "open:a"), {"id": 16, "op": "ping"}, publish(17, "open:a")),
        frame(publish(18, "closed:a")),
        frame(publish(19, "open:c")),
        frame(publish(20, "open:d")),  # past max_channels
        frame(publish(21, "open:a")),  # the 9th publish: too fast
        frame({"id": 22, "op": "presence", "channel": "open:b"}),  # refused: presence off
        frame(publish(23, "open:a")),
    ]
    client = await connected(endpoint)
    client.socket.data_received(b"".join(read))
    assert client.socket._receiving is not None  # the subscribe's
    fast = await client.settled()

    node = memory_node()
    await node.start()
    try:
        session = node.new_session("127.0.0.1")
        await session.receive('{"id":1,"op":"connect"}')
        for data in read:  # each frame's payload, as the coroutine path is given it
            payload = messages_unmasked(data)
            await session.receive(payload)
        await asyncio.sleep(0.01)
        slow = [orjson.loads(m) for m in session.outbox._items]
    finally:
        await node.close()
    slow = slow[1:]  # the connect's reply
    assert replies(fast) == replies(slow)
    assert codes(fast) == [
        (10, None),
        (11, None),
        (12, None),
        (13, ErrorCode.PERMISSION_DENIED),
        (None, ErrorCode.BAD_REQUEST),
        (15, None),
        (16, None),
        (17, None),
        (18, ErrorCode.PERMISSION_DENIED),
        (19, None),
        (20, ErrorCode.LIMIT_EXCEEDED),
        (21, ErrorCode.LIMIT_EXCEEDED),
        (22, ErrorCode.PERMISSION_DENIED),
        (23, ErrorCode.LIMIT_EXCEEDED),
    ]
    pushes = [m for m in fast if m.get("push") == "pub"]
    assert [(p["channel"], p["offset"]) for p in pushes] == [("open:b", 1)]


def messages_unmasked(data: bytes) -> bytes:
    """The payload of one masked client frame (short or 16-bit length)."""
    n, i = data[1] & 0x7F, 2
    if n == 126:
        (n,), i = struct.unpack("!H", data[2:4]), 4
    mask, payload = data[i : i + 4], data[i + 4 : i + 4 + n]
    return bytes(b ^ mask[j % 4] for j, b in enumerate(payload))


async def test_a_publish_hook_falls_back_to_the_coroutine_path_and_still_decides(
    endpoint: _Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[Any] = []

    async def hook(
        self: AppHooks, client: str, user: str | None, channel: str, data: Any, headers: Any
    ) -> HookAnswer:
        asked.append(data)
        await asyncio.sleep(0.001)  # the app server's round trip
        if data == "deny":
            raise HookDenied("the app says no")
        return HookAnswer({"data": f"rewritten {data}"})

    monkeypatch.setattr(AppHooks, "publish", hook)
    client = await connected(endpoint)
    read = [
        frame(publish(10, "open:a", "one")),
        frame(publish(11, "hook:a", "two")),
        frame(publish(12, "open:a", "three")),
        frame(publish(13, "hook:a", "deny")),
        frame(publish(14, "hook:a", "four")),
    ]
    client.socket.data_received(b"".join(read))
    assert client.socket._receiving is not None  # the hook needs an await: a task
    assert endpoint.node.pubsub.published == 1  # the first, at once; the rest wait in order
    got = await client.settled()
    assert codes(got) == [
        (10, None),
        (11, None),
        (12, None),
        (13, ErrorCode.PERMISSION_DENIED),
        (14, None),
    ]
    assert [r.get("result", {}).get("offset") for r in replies(got)] == [1, 1, 2, None, 2]
    assert asked == ["two", "deny", "four"]
    page = await endpoint.node.pubsub.history("hook:a", None, 10)
    assert [p.data for p in page.publications] == ["rewritten two", "rewritten four"]
    assert endpoint.node.counters["publish_denied"] == 1


async def test_a_session_closed_by_a_command_handles_no_more_of_its_message(
    endpoint: _Endpoint,
) -> None:
    """The first publish's reply finds the client not reading (its transport holds more
    than ``limits.outgoing_buffer``): the session closes, and the next publish of the same
    message is not run, as on the coroutine path."""
    client = await connected(endpoint)
    client.transport.get_write_buffer_size = lambda: 10**9  # type: ignore[method-assign]
    client.socket.data_received(frame(publish(10, "open:a"), publish(11, "open:b")))
    assert client.socket._receiving is None
    assert client.session.close_code == DisconnectCode.SLOW_CONSUMER
    assert endpoint.node.pubsub.published == 1


# ---------------------------------------------------------------- SQLite: queued publishes


def stored_offsets(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        blobs = conn.execute("SELECT rows FROM commits ORDER BY id").fetchall()
    conn.close()
    return sorted(offset for (blob,) in blobs for _, offset, _, _, _ in orjson.loads(blob))


class CommitWatchingTransport(RecordingTransport):
    """Notes, at each write, the offsets the SQLite file holds."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.stored_then: list[list[int]] = []

    def write(self, data: bytes) -> None:
        super().write(data)
        self.stored_then.append(stored_offsets(self.path))


async def test_queued_publishes_are_answered_in_order_once_committed(tmp_path: Path) -> None:
    config = config_from_dict(tomllib.loads(BENCH_CONFIG.format(session="", limits="")))
    node = Node(
        replace(config, engine=replace(config.engine, kind="sqlite", data_dir=str(tmp_path)))
    )
    await node.start()
    endpoint = _Endpoint(node)
    try:
        broker = node.broker
        assert isinstance(broker, SqliteBroker)
        client = await connected(endpoint)
        transport = CommitWatchingTransport(broker.path)
        client.socket._transport = transport  # type: ignore[assignment]
        read = [
            frame(publish(10, "bench1", 1)),
            frame(publish(11, "bench1", 2)),
            frame({"id": 12, "op": "ping"}),  # waits for the two before it to be kept
            frame(publish(13, "bench1", 3)),
        ]
        client.socket.data_received(b"".join(read))
        assert client.socket._receiving is not None  # the ping's wait
        got = []
        for _ in range(500):  # bounded
            await asyncio.sleep(0.005)
            got = messages(bytes(transport.out))
            if len(got) == 4:
                break
        assert [m["id"] for m in got] == [10, 11, 12, 13]
        assert [m["result"].get("offset") for m in got] == [1, 2, None, 3]
        # Every reply went out once its publication was in the file (and the ping's
        # once the two before it were), never before.
        seen = 0
        for data, stored in zip(transport.writes, transport.stored_then, strict=True):
            for message in messages(data):
                seen += 1
                offset = message["result"].get("offset")
                assert offset is None or offset in stored
                if message["id"] == 12:
                    assert {1, 2} <= set(stored)
        assert seen == 4
    finally:
        endpoint.wheel.close()
        await node.close()


async def test_a_publish_the_engine_cannot_keep_is_answered_internal_on_the_fast_path(
    tmp_path: Path,
) -> None:
    config = config_from_dict(tomllib.loads(BENCH_CONFIG.format(session="", limits="")))
    node = Node(
        replace(config, engine=replace(config.engine, kind="sqlite", data_dir=str(tmp_path)))
    )
    await node.start()
    endpoint = _Endpoint(node)
    try:
        client = await connected(endpoint)
        await node.broker.close()  # the engine is closing: PublishFailed at once
        client.socket.data_received(frame(publish(10, "bench1", 1)))
        assert client.socket._receiving is None
        [reply] = await client.settled()
        assert reply["id"] == 10
        assert reply["error"]["code"] == ErrorCode.INTERNAL
        assert "closed" in reply["error"]["message"]
    finally:
        endpoint.wheel.close()
        await node.close()


# ------------------------- SQLite: replies told by the commit's report (PubSub.publish_then)


async def sqlite_endpoint(tmp_path: Path, commit_wait: float) -> _Endpoint:
    config = config_from_dict(tomllib.loads(BENCH_CONFIG.format(session="", limits="")))
    engine = replace(config.engine, kind="sqlite", data_dir=str(tmp_path))
    node = Node(replace(config, engine=engine))
    await node.start()
    broker = node.broker
    assert isinstance(broker, SqliteBroker)
    # Past what the config allows, so that the commit is surely within the wait on a
    # busy machine (0: the loop never waits, the reply comes from the writer's report).
    broker._commit_wait = commit_wait
    return _Endpoint(node)


def queued_replies(client: Client) -> list[dict[str, Any]]:
    """The replies the session queued and has not written yet."""
    return [orjson.loads(item) for item in client.session.outbox._items]


async def test_a_read_of_publishes_is_answered_in_its_iteration_once_committed(
    tmp_path: Path,
) -> None:
    """Within the bounded commit wait the replies are queued before ``data_received``
    returns (the read's own iteration, no callback of a future an iteration later), and
    every one names an offset the file already holds."""
    endpoint = await sqlite_endpoint(tmp_path, commit_wait=5.0)
    try:
        client = await connected(endpoint)
        broker = endpoint.node.broker
        assert isinstance(broker, SqliteBroker)
        client.socket.data_received(b"".join(frame(publish(10 + i, "bench1", i)) for i in range(5)))
        got = queued_replies(client)
        assert [m["id"] for m in got] == [10, 11, 12, 13, 14]
        offsets = [m["result"]["offset"] for m in got]
        assert offsets == [1, 2, 3, 4, 5]
        assert set(offsets) <= set(stored_offsets(broker.path))
        assert client.session._unkept == 0
        assert [m["id"] for m in await client.settled()] == [10, 11, 12, 13, 14]
    finally:
        endpoint.wheel.close()
        await endpoint.node.close()


async def test_no_reply_comes_before_the_commit(tmp_path: Path) -> None:
    """Without the wait the commit is over later: nothing is answered in the read's
    iteration, and each reply, when it comes, names an offset the file holds."""
    endpoint = await sqlite_endpoint(tmp_path, commit_wait=0.0)
    try:
        client = await connected(endpoint)
        broker = endpoint.node.broker
        assert isinstance(broker, SqliteBroker)
        transport = CommitWatchingTransport(broker.path)
        client.socket._transport = transport  # type: ignore[assignment]
        client.socket.data_received(b"".join(frame(publish(10 + i, "bench1", i)) for i in range(3)))
        assert queued_replies(client) == []
        assert client.session._unkept == 3
        await client.settled()
        assert [m["id"] for m in messages(bytes(transport.out))] == [10, 11, 12]
        for data, stored in zip(transport.writes, transport.stored_then, strict=True):
            for message in messages(data):
                assert message["result"]["offset"] in stored
    finally:
        endpoint.wheel.close()
        await endpoint.node.close()


async def test_a_refusal_behind_a_queued_publish_is_answered_after_it(tmp_path: Path) -> None:
    """Replies come in command order: a publish refused at once (a reserved channel) while
    the one before it waits for its commit is held in its place, not sent first."""
    endpoint = await sqlite_endpoint(tmp_path, commit_wait=0.0)
    try:
        client = await connected(endpoint)
        read = [
            frame(publish(10, "bench1", 1)),
            frame(publish(11, "$key:alice", 2)),  # refused at once
            frame(publish(12, "bench1", 3)),
        ]
        client.socket.data_received(b"".join(read))
        assert queued_replies(client) == []  # the refusal waits for 10's commit
        got = await client.settled()
        assert codes(got) == [(10, None), (11, ErrorCode.PERMISSION_DENIED), (12, None)]
        assert [m.get("result", {}).get("offset") for m in got] == [1, None, 2]
        assert client.session._unkept == 0
        assert not client.session._held
    finally:
        endpoint.wheel.close()
        await endpoint.node.close()


async def test_a_mixed_read_keeps_command_order_with_the_commit_in_its_iteration(
    tmp_path: Path,
) -> None:
    """The publishes before a ``ping`` are answered from the commit's report; the ping
    waits for them (its task), then the publish after it: replies in command order."""
    endpoint = await sqlite_endpoint(tmp_path, commit_wait=5.0)
    try:
        client = await connected(endpoint)
        read = [
            frame(publish(10, "bench1", 1), publish(11, "bench1", 2)),
            frame({"id": 12, "op": "ping"}),
            frame(publish(13, "bench1", 3)),
        ]
        client.socket.data_received(b"".join(read))
        assert [m["id"] for m in queued_replies(client)] == [10, 11]
        got = await client.settled()
        assert [m["id"] for m in got] == [10, 11, 12, 13]
        assert [m["result"].get("offset") for m in got] == [1, 2, None, 3]
    finally:
        endpoint.wheel.close()
        await endpoint.node.close()


async def test_a_failed_commit_in_the_reads_iteration_is_an_error_reply(tmp_path: Path) -> None:
    endpoint = await sqlite_endpoint(tmp_path, commit_wait=5.0)
    try:
        client = await connected(endpoint)
        broker = endpoint.node.broker
        assert isinstance(broker, SqliteBroker)
        writer = broker._store._writer
        assert writer is not None
        pages = writer.execute("PRAGMA page_count").fetchone()[0]
        writer.execute(f"PRAGMA max_page_count = {pages}")
        client.socket.data_received(frame(publish(10, "bench1", "y" * 30_000)))
        [reply] = queued_replies(client)
        assert reply["id"] == 10
        assert reply["error"]["code"] == ErrorCode.INTERNAL
        assert "could not store" in reply["error"]["message"]
        assert client.session._unkept == 0
    finally:
        endpoint.wheel.close()
        await endpoint.node.close()
