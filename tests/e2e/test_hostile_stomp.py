"""Hostile STOMP input against a real server process: what a client without credentials
sends cannot grow the broker's memory past its budgets, keep bytes forever, smuggle control
characters into names, forge MESSAGE headers through tags, or set absurd heart-beats.

Each refusal is an ERROR naming the problem (and the config key of a limit), then the end
of that connection only: other clients, a consumer of another queue and topic subscribers
go on receiving everything.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.request
from collections.abc import Iterator

import aiohttp
import pytest

from orbiter.protocol.stomp import Frame, FrameParser, encode_frame
from tests.support.server import RunningServer
from tests.support.stomp_helpers import RawClient, connect, start_stomp_server

#: How the broker counts a queue message (see orbiter.services.stomp.queues): its body and
#: 256 bytes, plus each forwarded header (a raw SEND with destination and receipt has none).
BODY = 16_000
MESSAGE_BYTES = 256 + BODY
QUEUE_BUDGET = 256 * 1024
TOTAL_BUDGET = 2 * 1024 * 1024

FLOOD_TOML = f"""
max_queue_bytes = {QUEUE_BUDGET}
max_total_queue_bytes = {TOTAL_BUDGET}
heartbeat_send = 0.2
heartbeat_receive = 0
"""


@pytest.fixture(scope="module")
def broker() -> Iterator[tuple[RunningServer, int]]:
    srv, port = start_stomp_server(stomp_toml=FLOOD_TOML)
    yield srv, port
    srv.stop()


def error_of(raw: RawClient) -> Frame:
    """The next frame, which must be an ERROR, and then the end of the connection."""
    frame = raw.next()
    assert frame.command == "ERROR", (frame.command, frame.headers)
    assert raw.wait_closed(), "the connection stayed open after the ERROR"
    return frame


def send_until_refused(raw: RawClient, queues: list[str], limit: int = 1000) -> tuple[int, Frame]:
    """SEND BODY bytes with a receipt to each queue in turn until an ERROR comes back.

    Returns how many were acknowledged, and the ERROR.
    """
    for n in range(limit):
        raw.frame(
            "SEND",
            [("destination", queues[n % len(queues)]), ("receipt", f"r{n}")],
            b"%05d" % n + b"x" * (BODY - 5),
        )
        frame = raw.next()
        if frame.command == "ERROR":
            assert frame.get("receipt-id") == f"r{n}"
            assert raw.wait_closed()
            return n, frame
        assert frame.get("receipt-id") == f"r{n}"
    raise AssertionError(f"{limit} messages accepted: no budget")


def blast(port: int, megabytes: int) -> None:
    """A client that pipelines SENDs to many queues without waiting for anything."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        sock.sendall(encode_frame("CONNECT", [("accept-version", "1.2"), ("host", "x")]))
        frames = b"".join(
            encode_frame("SEND", [("destination", f"/queue/blast-{n}")], b"y" * BODY)
            for n in range(megabytes * 1024 * 1024 // BODY)
        )
        sock.sendall(frames)
    except OSError:
        pass  # cut after its ERROR: expected
    finally:
        sock.close()


def test_a_queue_flood_is_refused_at_the_budgets_and_nobody_else_notices(broker):
    srv, port = broker
    # Legitimate clients: a consumer of a work queue, a topic subscriber, a producer.
    worker, got_work = connect(port)
    worker.subscribe("/queue/work", id="w", receipt="w")
    reader, got_topic = connect(port)
    reader.subscribe("/topic/chat:live", id="t", receipt="t")
    producer, got_producer = connect(port)
    assert got_work.wait(lambda: "w" in got_work.receipts)
    assert got_topic.wait(lambda: "t" in got_topic.receipts)
    producer.send("/queue/work", "warm-up")
    got_work.wait_messages(1)
    before = srv.rss_bytes()

    # One queue: refused once its own budget is full.
    one = RawClient(port)
    one.connect()
    accepted_one, error = send_until_refused(one, ["/queue/flood-one"])
    assert accepted_one == QUEUE_BUDGET // MESSAGE_BYTES
    assert error.get("message") == "queue full"
    body = error.body.decode()
    assert "stomp.max_queue_bytes" in body
    assert f"at most {QUEUE_BUDGET} bytes" in body
    assert "the message was not accepted" in body

    # Many queues: refused once all queues together hold the total budget.
    queues = [f"/queue/flood-{n}" for n in range(20)]
    many = RawClient(port)
    many.connect()
    accepted, error = send_until_refused(many, queues)
    assert accepted == (TOTAL_BUDGET - accepted_one * MESSAGE_BYTES) // MESSAGE_BYTES
    assert error.get("message") == "queue full"
    assert "stomp.max_total_queue_bytes" in error.body.decode()

    # The same over /stomp on the HTTP port, and a blast of 24 MB more over TCP.
    async def over_websocket() -> Frame:
        url = srv.url.replace("http://", "ws://") + "/stomp"
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(url, protocols=("v12.stomp",)) as ws,
        ):
            parser = FrameParser(version="1.2")
            await ws.send_bytes(encode_frame("CONNECT", [("accept-version", "1.2")]))
            await ws.send_bytes(encode_frame("SEND", [("destination", "/queue/ws")], b"z" * BODY))
            frames: list[Frame] = []
            while len(frames) < 2:
                msg = await ws.receive(timeout=5)
                assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), msg
                data = msg.data.encode() if isinstance(msg.data, str) else msg.data
                frames += parser.feed(data)
            return frames[1]

    ws_error = asyncio.run(over_websocket())
    assert ws_error.command == "ERROR"
    assert "stomp.max_total_queue_bytes" in ws_error.body.decode()
    for _ in range(12):
        blast(port, 2)

    # Memory: the budget (2 MiB) and some slack, not the 30 MB thrown at it.
    time.sleep(0.5)
    grown = srv.rss_bytes() - before
    assert grown < 16 * 1024 * 1024, f"RSS grew by {grown / 1e6:.1f} MB"

    # Everyone else: the work queue (its consumer takes at once) and the topic go on.
    for n in range(20):
        producer.send("/queue/work", f"job {n}")
        producer.send("/topic/chat:live", f"news {n}")
    got_work.wait_messages(21)
    assert got_work.bodies() == ["warm-up", *(f"job {n}" for n in range(20))]
    got_topic.wait_messages(20)
    assert got_topic.bodies() == [f"news {n}" for n in range(20)]
    assert not got_work.errors
    assert not got_topic.errors
    assert not got_producer.errors

    # Acknowledged means kept: every accepted message is there, in order, nothing evicted.
    consumer, got = connect(port)
    consumer.subscribe("/queue/flood-0", id="c")
    expected = [n for n in range(accepted) if n % len(queues) == 0]
    got.wait_messages(len(expected))
    assert [int(body[:5]) for body in got.bodies()] == expected
    consumer.subscribe("/queue/flood-one", id="d")
    got.wait_messages(len(expected) + accepted_one)
    for c in (worker, reader, producer, consumer):
        c.disconnect()
    assert srv.wait_for_log("queue full")


# Expired queue messages (expires, expiration), their bytes and queues freed by the sweep:
# tests/services/test_stomp_session.py, on a clock the test moves.


@pytest.mark.parametrize(
    ("data", "message", "problem"),
    [
        (
            b"SEND\ndestination:/queue/a\x01b\n\nx\x00",
            "bad destination",
            "queue name 'a\\x01b' contains a control character",
        ),
        (
            b"SUBSCRIBE\nid:1\ndestination:/queue/line\\nbreak\n\n\x00",
            "bad destination",
            "contains a control character",
        ),
        (
            b"SEND\ndestination:/topic/chat:a\x7f\n\nx\x00",
            "bad destination",
            "contains a control character",
        ),
        (
            b"SEND\ndestination:/queue/a\nna\x00me:v\n\nx\x00",
            "malformed frame received",
            "a NUL octet in the frame's command or headers",
        ),
        (
            b"SEND\ndestination:/queue/a\nna\x1bme:v\n\nx\x00",
            "malformed frame received",
            "header name 'na\\x1bme' holds a control character",
        ),
        (
            b"SEND\ndestination:/queue/a\nname:v\x00alue\n\nx\x00",
            "malformed frame received",
            "a NUL octet in the frame's command or headers",
        ),
    ],
)
def test_control_characters_in_names_are_refused(broker, data, message, problem):
    _, port = broker
    raw = RawClient(port)
    raw.connect()
    raw.send(data)
    error = error_of(raw)
    assert error.get("message") == message
    assert problem in error.body.decode()
    # A client with non-ASCII names and escaped values is served as before.
    conn, got = connect(port)
    conn.subscribe("/queue/caf\u00e9", id="1")
    conn.send("/queue/caf\u00e9", "ok", headers={"x-\u00fcml\u00e4ut": "a:b\nc"})
    (msg,) = got.wait_messages(1)
    assert msg.headers["x-\u00fcml\u00e4ut"] == "a:b\nc"
    conn.disconnect()


def test_reserved_names_in_any_letter_case_are_not_tags(broker):
    srv, port = broker
    reader, got = connect(port)
    reader.subscribe("/topic/chat:tags", id="1", receipt="s")
    assert got.wait(lambda: "s" in got.receipts)
    raw = RawClient(port)
    raw.connect()
    raw.frame(
        "SEND",
        [
            ("destination", "/topic/chat:tags"),
            ("Content-Length", "999"),
            ("Destination", "/topic/chat:elsewhere"),
            ("Message-Id", "forged"),
            ("Orbiter-Offset", "7"),
            ("kind", "real"),
            ("receipt", "r"),
        ],
        b"hello",
    )
    assert raw.next().command == "RECEIPT"
    (msg,) = got.wait_messages(1)
    assert msg.body == "hello"
    assert msg.headers["kind"] == "real"
    names = set(msg.headers)
    assert not {"Content-Length", "Destination", "Message-Id", "Orbiter-Offset"} & names
    assert msg.headers["destination"] == "/topic/chat:tags"
    assert msg.headers["message-id"] != "forged"
    reader.disconnect()

    async def api_publish() -> tuple[int, str]:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                srv.url + "/api/publish",
                json={"channel": "chat:tags", "data": 1, "tags": {"Content-Length": "1"}},
            ) as resp,
        ):
            return resp.status, (await resp.json())["error"]["message"]

    status, problem = asyncio.run(api_publish())
    assert status == 400
    assert "tag name 'Content-Length' is reserved" in problem


def test_heart_beats_are_held_to_a_range(broker):
    _, port = broker
    # Absurdly long: accepted (held to an hour), and the connection works.
    raw = RawClient(port)
    connected = raw.connect(heart_beat="999999999999,1")
    assert connected.command == "CONNECTED"
    assert connected.get("heart-beat") == "200,0"
    # Asked for a beat every millisecond: the broker beats at most every 200 ms (its own).
    start, beats = time.monotonic(), raw.beats
    raw.frame("SUBSCRIBE", [("id", "1"), ("destination", "/queue/hb"), ("receipt", "r")])
    assert raw.next().command == "RECEIPT"
    deadline = start + 1.0
    while time.monotonic() < deadline:
        raw.sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            data = raw.sock.recv(65536)
        except TimeoutError:
            break
        if data.strip(b"\n") == b"":
            raw.beats += data.count(b"\n")
    assert 2 <= raw.beats - beats <= 7
    raw.close()
    for value in ("-1,0", "0,-5", "ten,0", "1000", "1.5,0"):
        bad = RawClient(port)
        bad.frame("CONNECT", [("accept-version", "1.2"), ("heart-beat", value)])
        error = error_of(bad)
        assert error.get("message") == "malformed heart-beat header"
        assert "is not two whole numbers of milliseconds" in error.body.decode()


#: One client address's share (stomp.max_client_queue_bytes): four messages, a quarter of
#: the total, and less than one queue's budget, so that only the share can refuse.
SHARE = 4 * MESSAGE_BYTES
SHARE_TOML = f"""
max_queue_bytes = {4 * SHARE}
max_total_queue_bytes = {4 * SHARE}
max_client_queue_bytes = {SHARE}
"""


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[RunningServer, int]]:
    srv, port = start_stomp_server(stomp_toml=SHARE_TOML)
    yield srv, port
    srv.stop()


def send_accepted(raw: RawClient, queue: str, count: int, first: int = 0) -> None:
    """SEND ``count`` BODY-byte messages to ``queue``, each answered by its RECEIPT."""
    for n in range(first, first + count):
        raw.frame("SEND", [("destination", queue), ("receipt", f"r{n}")], b"%05d" % n * (BODY // 5))
        frame = raw.next()
        assert frame.command == "RECEIPT", (frame.command, frame.headers, frame.body[:200])
        assert frame.get("receipt-id") == f"r{n}"


async def sends_over_websocket(
    srv: RunningServer,
    count: int,
    *,
    sockjs: bool = False,
    source: str = "127.0.0.1",
    forwarded_for: str | None = None,
) -> list[str]:
    """CONNECT over ``/stomp`` (or SockJS's websocket URL under it) from ``source``, then
    up to ``count`` SENDs of BODY bytes to ``/queue/ws-share``, each waiting for its answer.

    Returns the commands answering the SENDs: RECEIPTs, then an ERROR naming the share if
    one came (and then nothing more).
    """
    base = srv.url.replace("http://", "ws://") + "/stomp"
    url = base + "/sockjs/000/share/websocket" if sockjs else base
    headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
    parser = FrameParser(version="1.2")
    frames: list[Frame] = []

    async def next_frame(ws: aiohttp.ClientWebSocketResponse) -> Frame:
        while not frames:
            msg = await ws.receive(timeout=5)
            assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), msg
            data = msg.data.encode() if isinstance(msg.data, str) else msg.data
            if sockjs:  # "o", "h", or "a" and a JSON array of STOMP text
                texts = json.loads(data[1:]) if data.startswith(b"a") else []
                data = "".join(texts).encode()
            frames.extend(parser.feed(data))
        return frames.pop(0)

    async def send(ws: aiohttp.ClientWebSocketResponse, data: bytes) -> None:
        await ws.send_str(json.dumps([data.decode()]) if sockjs else data.decode())

    answers: list[str] = []
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.ws_connect(url, protocols=("v12.stomp",), headers=headers) as ws,
    ):
        await send(ws, encode_frame("CONNECT", [("accept-version", "1.2"), ("host", "x")]))
        assert (await next_frame(ws)).command == "CONNECTED"
        for n in range(count):
            await send(
                ws,
                encode_frame(
                    "SEND", [("destination", "/queue/ws-share"), ("receipt", f"w{n}")], b"w" * BODY
                ),
            )
            frame = await next_frame(ws)
            assert frame.get("receipt-id") == f"w{n}"
            answers.append(frame.command)
            if frame.command == "ERROR":
                assert frame.get("message") == "queue full"
                assert "stomp.max_client_queue_bytes" in frame.body.decode()
                break
    return answers


def client_queue_refusals(srv: RunningServer) -> int:
    with urllib.request.urlopen(srv.url + "/api/stats", timeout=5) as answer:
        return int(json.loads(answer.read())["counters"].get("limit_client_queue_bytes", 0))


def test_a_client_that_fills_its_share_is_refused_again_at_once_however_it_reconnects(shared):
    """The share belongs to the address, not to the connection: reconnecting, over TCP,
    /stomp or SockJS, is refused at its first SEND, while another address still sends."""
    srv, port = shared
    greedy = RawClient(port)
    greedy.connect()
    # Its share spans queues: four messages to two queues, then a fifth is refused.
    accepted, error = send_until_refused(greedy, ["/queue/greedy-a", "/queue/greedy-b"])
    assert accepted == SHARE // MESSAGE_BYTES == 4
    assert error.get("message") == "queue full"
    body = error.body.decode()
    assert f"the messages sent from 127.0.0.1 hold {SHARE} bytes" in body
    assert "stomp.max_client_queue_bytes" in body
    assert f"at most {SHARE} bytes" in body
    assert "the message was not accepted" in body
    # Reconnected from the same address: refused at its first SEND, on every transport.
    again = RawClient(port)
    assert again.connect().command == "CONNECTED"
    again.frame("SEND", [("destination", "/queue/greedy-c"), ("receipt", "again")], b"x" * BODY)
    error = error_of(again)
    assert error.get("receipt-id") == "again"
    assert f"the messages sent from 127.0.0.1 hold {SHARE} bytes" in error.body.decode()
    assert asyncio.run(sends_over_websocket(srv, 1)) == ["ERROR"]
    assert asyncio.run(sends_over_websocket(srv, 1, sockjs=True)) == ["ERROR"]
    assert client_queue_refusals(srv) == 4
    # Another address has its whole share: the total has room for it.
    other = RawClient(port, source="127.0.0.2")
    other.connect()
    send_accepted(other, "/queue/greedy-a", 2, first=100)
    send_accepted(other, "/queue/greedy-b", 2, first=200)
    other.frame("SEND", [("destination", "/queue/greedy-a"), ("receipt", "r5")], b"x" * BODY)
    assert "stomp.max_client_queue_bytes" in error_of(other).body.decode()
    # Nothing accepted was dropped: a consumer gets all of it, in order.
    consumer = RawClient(port)
    consumer.connect()
    consumer.frame("SUBSCRIBE", [("destination", "/queue/greedy-a"), ("id", "a")])
    got = [int(consumer.next().body[:5]) for _ in range(4)]
    assert got == [0, 2, 100, 101]
    consumer.close()
    # Half of each share is free again; the other half still waits in greedy-b.
    assert asyncio.run(sends_over_websocket(srv, 3)) == ["RECEIPT", "RECEIPT", "ERROR"]
    assert asyncio.run(sends_over_websocket(srv, 3, sockjs=True, source="127.0.0.2")) == [
        "RECEIPT",
        "RECEIPT",
        "ERROR",
    ]
    assert srv.wait_for_log("stomp connection from 127.0.0.1: queue full")
    assert client_queue_refusals(srv) == 7


def test_an_address_s_share_is_free_again_once_its_messages_are_consumed(shared):
    _, port = shared
    sender = RawClient(port, source="127.0.0.3")
    sender.connect()
    send_accepted(sender, "/queue/share", 4)  # the share is full
    # A consumer that acknowledges takes them: held unacknowledged, they still count ...
    consumer = RawClient(port)
    consumer.connect()
    consumer.frame(
        "SUBSCRIBE", [("destination", "/queue/share"), ("id", "s"), ("ack", "client-individual")]
    )
    held = [consumer.next() for _ in range(4)]
    assert [int(m.body[:5]) for m in held] == [0, 1, 2, 3]
    # ... until acknowledged: then the same address may send its share again, on a new
    # connection as well as on its old one.
    for n, message in enumerate(held):
        consumer.frame("ACK", [("id", message.get("ack") or ""), ("receipt", f"a{n}")])
        assert consumer.next().get("receipt-id") == f"a{n}"
    send_accepted(sender, "/queue/share", 2, first=4)
    newcomer = RawClient(port, source="127.0.0.3")
    newcomer.connect()
    send_accepted(newcomer, "/queue/share", 2, first=6)
    # Handed to the consumer and held unacknowledged, these fill the share once more.
    again = [consumer.next() for _ in range(4)]
    assert [int(m.body[:5]) for m in again] == [4, 5, 6, 7]
    sender.frame("SEND", [("destination", "/queue/share"), ("receipt", "r8")], b"x" * BODY)
    error = error_of(sender)
    assert error.get("message") == "queue full"
    assert "stomp.max_client_queue_bytes" in error.body.decode()
    newcomer.close()
    consumer.close()


def test_behind_a_trusted_proxy_the_share_is_the_forwarded_client_s():
    """/stomp and SockJS behind a trusted proxy: each forwarded client has its own share,
    which none of its connections, on either route, can pass; the proxy's own address is
    not charged for them."""
    srv, port = start_stomp_server(
        extra_toml='[server]\ntrusted_proxies = ["127.0.0.1"]\n', stomp_toml=SHARE_TOML
    )
    try:
        alice, bob = "192.0.2.1, 127.0.0.1", "192.0.2.2"

        def sends(count: int, forwarded_for: str, sockjs: bool = False) -> list[str]:
            return asyncio.run(
                sends_over_websocket(srv, count, sockjs=sockjs, forwarded_for=forwarded_for)
            )

        assert sends(5, alice) == ["RECEIPT"] * 4 + ["ERROR"]
        assert sends(1, alice) == ["ERROR"]
        assert sends(1, alice, sockjs=True) == ["ERROR"]
        assert sends(2, bob, sockjs=True) == ["RECEIPT"] * 2
        assert sends(3, bob) == ["RECEIPT"] * 2 + ["ERROR"]
        # The proxy's address itself (STOMP over TCP has no forwarded header) has its own.
        proxy = RawClient(port)
        proxy.connect()
        send_accepted(proxy, "/queue/proxy", 4)
        assert srv.wait_for_log("stomp connection from 192.0.2.1: queue full")
        assert srv.wait_for_log("stomp connection from 192.0.2.2: queue full")
        proxy.close()
    finally:
        srv.stop()
