"""The STOMP broker over TCP with stomp.py (unmodified, from PyPI), and raw frames for
what stomp.py will not send: every command, ack mode, transaction, receipt and error."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Iterator

import pytest
import stomp

from orbiter.protocol.stomp import encode_frame
from tests.support.keys import SECRET, token
from tests.support.server import RunningServer
from tests.support.stomp_helpers import RawClient, connect, start_stomp_server

STOMP_TOML = """
max_queue_length = 5
heartbeat_send = 0.2
heartbeat_receive = 0.3
connect_timeout = 0.5
"""


@pytest.fixture(scope="module")
def broker() -> Iterator[tuple[RunningServer, int]]:
    srv, port = start_stomp_server(stomp_toml=STOMP_TOML)
    yield srv, port
    srv.stop()


@pytest.fixture
def port(broker: tuple[RunningServer, int]) -> int:
    return broker[1]


def unique(name: str) -> str:
    return f"{name}-{time.monotonic_ns()}"


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_connected_frame_per_version(port, version):
    raw = RawClient(port)
    if version == "1.0":
        raw.frame("CONNECT", [("login", "alice"), ("passcode", "x")])
        frame = raw.next()
    else:
        frame = raw.connect(version, heart_beat="0,0")
    assert frame.command == "CONNECTED"
    assert frame.get("version") == version
    assert (frame.get("server") or "").startswith("orbiter/")
    assert frame.get("session")
    if version != "1.0":
        assert frame.get("heart-beat") == "200,300"
    raw.close()


def test_stomp_command_and_version_negotiation(port):
    raw = RawClient(port)
    raw.frame("STOMP", [("accept-version", "1.0,1.1,2.0"), ("host", "x")])
    assert raw.next().get("version") == "1.1"
    raw.close()
    raw = RawClient(port)
    raw.frame("CONNECT", [("accept-version", "2.0,2.1"), ("host", "x")])
    error = raw.next()
    assert error.command == "ERROR"
    assert error.get("version") == "1.0,1.1,1.2"
    assert b"Supported protocol versions are 1.0 1.1 1.2" in error.body
    assert raw.wait_closed()


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_topic_fan_out_with_receipts(port, version):
    topic = "/topic/" + unique("t")
    a, got_a = connect(port, version)
    b, got_b = connect(port, version)
    a.subscribe(topic, id="s1")
    b.subscribe(topic, id="s2", receipt="sub-b")
    assert got_b.wait(lambda: "sub-b" in got_b.receipts)
    a.send(topic, "hello", receipt="r1")
    assert got_a.wait(lambda: "r1" in got_a.receipts)
    for got, sub in ((got_a, "s1"), (got_b, "s2")):
        (message,) = got.wait_messages(1)
        assert message.body == "hello"
        assert message.headers["destination"] == topic
        assert message.headers["subscription"] == sub
        assert message.headers["content-type"].startswith("text/plain")
        assert message.headers["orbiter-offset"] == "1"
    a.disconnect()
    b.disconnect()


def test_unsubscribe_stops_delivery(port):
    topic = "/topic/" + unique("t")
    c, got = connect(port)
    c.subscribe(topic, id="1")
    c.subscribe(topic, id="2", receipt="r")
    assert got.wait(lambda: "r" in got.receipts)
    c.send(topic, "one")
    messages = got.wait_messages(2)
    assert sorted(m.headers["subscription"] for m in messages) == ["1", "2"]
    c.unsubscribe("1", receipt="u")
    assert got.wait(lambda: "u" in got.receipts)
    c.send(topic, "two", receipt="s")
    assert got.wait(lambda: "s" in got.receipts)
    time.sleep(0.2)
    assert [(m.body, m.headers["subscription"]) for m in got.messages[2:]] == [("two", "2")]
    c.disconnect()


def test_queue_round_robin_and_waiting_messages(port):
    queue = "/queue/" + unique("q")
    producer, _ = connect(port)
    for i in range(3):
        producer.send(queue, f"early {i}", headers={"x-app": "kept"})
    a, got_a = connect(port)
    a.subscribe(queue, id="a")
    early = got_a.wait_messages(3)
    assert [m.body for m in early] == ["early 0", "early 1", "early 2"]
    assert early[0].headers["x-app"] == "kept"
    b, got_b = connect(port)
    b.subscribe(queue, id="b", receipt="rb")
    assert got_b.wait(lambda: "rb" in got_b.receipts)
    for i in range(4):
        producer.send(queue, f"m{i}")
    assert got_a.wait(lambda: len(got_a.messages) == 5)
    assert got_b.wait(lambda: len(got_b.messages) == 2)
    assert {m.body for m in got_a.messages[3:]} | set(got_b.bodies()) == {"m0", "m1", "m2", "m3"}
    for c in (producer, a, b):
        c.disconnect()


def test_queue_full_is_refused_and_nothing_lost(port):
    queue = "/queue/" + unique("full")
    producer, got = connect(port)
    for i in range(5):
        producer.send(queue, f"m{i}")
    producer.send(queue, "one too many", receipt="over")
    assert got.wait(lambda: bool(got.errors))
    error = got.errors[0]
    assert error.headers["message"] == "queue full"
    assert error.headers["receipt-id"] == "over"
    assert "stomp.max_queue_length" in error.body
    consumer, got_c = connect(port)
    consumer.subscribe(queue, id="1")
    assert [m.body for m in got_c.wait_messages(5)] == [f"m{i}" for i in range(5)]
    time.sleep(0.1)
    assert len(got_c.messages) == 5
    consumer.disconnect()


def test_client_ack_is_cumulative_and_unacked_are_redelivered(port):
    queue = "/queue/" + unique("ack")
    a, got_a = connect(port)
    a.subscribe(queue, id="1", ack="client")
    producer, _ = connect(port)
    for i in range(3):
        producer.send(queue, f"m{i}")
    messages = got_a.wait_messages(3)
    # Acknowledging the second acknowledges the first too; the third stays held.
    a.ack(messages[1].headers["ack"], receipt="acked")
    assert got_a.wait(lambda: "acked" in got_a.receipts)
    b, got_b = connect(port)
    b.subscribe(queue, id="2", receipt="rb")
    assert got_b.wait(lambda: "rb" in got_b.receipts)
    a.disconnect()
    (again,) = got_b.wait_messages(1)
    assert again.body == "m2"
    assert again.headers["redelivered"] == "true"
    time.sleep(0.2)
    assert len(got_b.messages) == 1
    producer.disconnect()
    b.disconnect()


def test_client_individual_nack_redelivers_to_another_consumer(port):
    queue = "/queue/" + unique("nack")
    a, got_a = connect(port)
    a.subscribe(queue, id="1", ack="client-individual")
    producer, _ = connect(port)
    producer.send(queue, "m0")
    producer.send(queue, "m1")
    m0, m1 = got_a.wait_messages(2)
    b, got_b = connect(port)
    b.subscribe(queue, id="2", receipt="rb")
    assert got_b.wait(lambda: "rb" in got_b.receipts)
    a.ack(m1.headers["ack"])
    a.nack(m0.headers["ack"], receipt="n")
    assert got_a.wait(lambda: "n" in got_a.receipts)
    # Round-robin: the redelivered message goes to the next consumer in turn.

    def redelivered_bodies() -> list[str]:
        return [m.body for m in got_a.messages[2:] + got_b.messages]

    assert got_a.wait(lambda: redelivered_bodies() == ["m0"])
    redelivered = (got_a.messages[2:] + got_b.messages)[0]
    assert redelivered.headers["redelivered"] == "true"
    for c in (a, b, producer):
        c.disconnect()


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_ack_by_message_id_in_older_versions(port, version):
    queue = "/queue/" + unique("old")
    c, got = connect(port, version)
    c.subscribe(queue, id="s", ack="client")
    c.send(queue, "m")
    (message,) = got.wait_messages(1)
    if version == "1.1":
        c.ack(message.headers["message-id"], "s", receipt="a")
    else:
        c.ack(message.headers["message-id"], receipt="a")
    assert got.wait(lambda: "a" in got.receipts)
    assert not got.errors
    c.disconnect()


def test_transactions_commit_and_abort(port):
    queue = "/queue/" + unique("tx")
    topic = "/topic/" + unique("tx")
    consumer, got = connect(port)
    consumer.subscribe(queue, id="q")
    consumer.subscribe(topic, id="t", receipt="subs")
    assert got.wait(lambda: "subs" in got.receipts)
    producer, got_p = connect(port)
    tx = producer.begin()
    producer.send(queue, "in tx (queue)", transaction=tx)
    producer.send(topic, "in tx (topic)", transaction=tx, receipt="buffered")
    assert got_p.wait(lambda: "buffered" in got_p.receipts)
    time.sleep(0.2)
    assert got.messages == []
    producer.commit(tx)
    assert sorted(m.body for m in got.wait_messages(2)) == ["in tx (queue)", "in tx (topic)"]
    tx2 = producer.begin()
    producer.send(queue, "aborted", transaction=tx2)
    producer.abort(tx2)
    producer.send(queue, "after", receipt="after")
    assert got_p.wait(lambda: "after" in got_p.receipts)
    assert got.wait(lambda: len(got.messages) == 3)
    assert got.messages[2].body == "after"
    assert not got_p.errors
    producer.disconnect()
    consumer.disconnect()


def test_transactional_ack(port):
    queue = "/queue/" + unique("txack")
    c, got = connect(port)
    c.subscribe(queue, id="1", ack="client-individual")
    c.send(queue, "m")
    (message,) = got.wait_messages(1)
    tx = c.begin()
    c.ack(message.headers["ack"], transaction=tx)
    c.abort(tx)
    # Aborted: the ACK never happened, so a second one is still valid.
    c.ack(message.headers["ack"], receipt="ok")
    assert got.wait(lambda: "ok" in got.receipts)
    assert not got.errors
    c.disconnect()


def test_disconnect_with_receipt(port):
    raw = RawClient(port)
    raw.connect()
    raw.frame("DISCONNECT", [("receipt", "77")])
    receipt = raw.next()
    assert receipt.command == "RECEIPT"
    assert receipt.get("receipt-id") == "77"
    assert raw.wait_closed()


def test_json_bodies_map_to_channel_data(port):
    topic = "/topic/" + unique("json")
    c, got = connect(port)
    c.subscribe(topic, id="1", receipt="s")
    assert got.wait(lambda: "s" in got.receipts)
    c.send(topic, '{"n": 1}', content_type="application/json")
    c.send(topic, "plain")
    first, second = got.wait_messages(2)
    assert first.headers["content-type"] == "application/json"
    assert first.body == '{"n":1}'
    assert second.headers["content-type"] == "text/plain;charset=utf-8"
    c.send(topic, "{not json", content_type="application/json")
    assert got.wait(lambda: bool(got.errors))
    assert "not valid JSON" in got.errors[0].body
    c.disconnect()


# ------------------------------------------------------------------ bad input


def _error(raw: RawClient) -> str:
    frame = raw.next()
    assert frame.command == "ERROR", frame
    assert frame.get("message")
    assert raw.wait_closed()
    return f"{frame.get('message')}: {frame.body.decode()}"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x00\x01\x02 garbage \xff\xfe\n\n\x00", "malformed frame"),
        (b"SEND\ndestination:/queue/x\n\n" + b"x" * 1_048_586, "NUL missing"),
        (b"SEND\ndestination:/queue/x\nbig:" + b"h" * 10_000 + b"\n\n\x00", "header line"),
        (b"FROB\n\n\x00", "unknown command"),
        (b"ACK\nid:nope\n\n\x00", "no message with that id"),
        (b"SUBSCRIBE\ndestination:/topic/x\n\n\x00", "needs an id header"),
        (b"SEND\ndestination:/nowhere\n\nx\x00", "unknown destination"),
        (b"SEND\n\nx\x00", "needs a destination"),
        (b"COMMIT\ntransaction:none\n\n\x00", "was not begun"),
        (b"SUBSCRIBE\nid:1\ndestination:/topic/$key:x\n\n\x00", "reserved"),
        (b"SUBSCRIBE\nid:1\ndestination:/topic/x\nack:sometimes\n\n\x00", "ack must be"),
        (b"SEND\ndestination:/topic/x\nk:bad\\tescape\n\nx\x00", "escape"),
    ],
)
def test_bad_input_gets_an_error_and_others_are_served(port, data, expected):
    queue = "/queue/" + unique("safe")
    keeper, got = connect(port)
    keeper.subscribe(queue, id="1", ack="client")
    keeper.send(queue, "held", receipt="held")
    assert got.wait(lambda: "held" in got.receipts)
    raw = RawClient(port)
    raw.connect()
    raw.send(data)
    assert expected in _error(raw)
    # The broker still serves the other connection, and its held message is not lost.
    keeper.send(queue, "after", receipt="after")
    assert [m.body for m in got.wait_messages(2)] == ["held", "after"]
    keeper.disconnect()
    consumer, got_c = connect(port)
    consumer.subscribe(queue, id="1")
    assert sorted(m.body for m in got_c.wait_messages(2)) == ["after", "held"]
    consumer.disconnect()


def test_nack_is_not_stomp_1_0(port):
    raw = RawClient(port)
    raw.frame("CONNECT", [])
    assert raw.next().get("version") == "1.0"
    raw.frame("NACK", [("message-id", "x")])
    assert "not part of STOMP 1.0" in _error(raw)


def test_frames_before_connect_and_connect_twice(port):
    raw = RawClient(port)
    raw.frame("SEND", [("destination", "/queue/x")], b"x")
    assert "must be CONNECT" in _error(raw)
    raw = RawClient(port)
    raw.connect()
    raw.frame("CONNECT", [("accept-version", "1.2")])
    assert "twice" in _error(raw)


def test_error_carries_the_receipt_id(port):
    raw = RawClient(port)
    raw.connect()
    raw.frame("UNSUBSCRIBE", [("id", "none"), ("receipt", "r-9")])
    frame = raw.next()
    assert frame.command == "ERROR"
    assert frame.get("receipt-id") == "r-9"
    assert frame.get("message") == "unknown subscription"


# ------------------------------------------------------------------ heart-beats


def test_heart_beats_both_ways_and_silent_peer_is_dropped(port):
    raw = RawClient(port)
    connected = raw.connect(heart_beat="100,100")
    assert connected.get("heart-beat") == "200,300"
    # The broker beats every max(200, 100) ms; we must beat within max(100, 300) ms.
    started = time.monotonic()
    while time.monotonic() - started < 1.0:
        raw.send(b"\n")
        raw.sock.settimeout(0.1)
        try:
            data = raw.sock.recv(100)
        except TimeoutError:
            continue
        raw.beats += data.count(b"\n")
        assert b"ERROR" not in data
    assert raw.beats >= 3
    # Now stop beating: dropped after twice the interval, with an ERROR saying why.
    frame = raw.next(timeout=3)
    assert frame.command == "ERROR"
    assert frame.get("message") == "heart-beat timeout"
    assert raw.wait_closed()


def test_a_connection_that_never_connects_is_dropped(port):
    raw = RawClient(port)
    frame = raw.next(timeout=3)
    assert frame.command == "ERROR"
    assert frame.get("message") == "connect timeout"
    assert raw.wait_closed()


def test_stomp_py_with_heart_beats_stays_connected(port):
    c, got = connect(port, heartbeats=(100, 100))
    time.sleep(1.2)
    assert c.is_connected()
    assert not got.errors
    c.disconnect()


# ------------------------------------------------------------------ identity


@pytest.fixture(scope="module")
def keyed_broker() -> Iterator[int]:
    srv, port = start_stomp_server('[server]\napi_key = "s3cret"\n')
    yield port
    srv.stop()


def test_with_an_api_key_anonymous_clients_follow_channel_rules(keyed_broker):
    c, got = connect(keyed_broker)
    c.subscribe("/topic/news", id="1")
    c.send("/topic/chat:lobby", "browsers may publish here", receipt="ok")
    assert got.wait(lambda: "ok" in got.receipts)
    c.send("/topic/news", "but not here")
    assert got.wait(lambda: bool(got.errors))
    assert got.errors[0].headers["message"] == "permission denied"
    assert "client_publish" in got.errors[0].body


def test_the_api_key_as_passcode_may_publish_anywhere(keyed_broker):
    c, got = connect(keyed_broker, username="app", passcode="s3cret")
    c.send("/topic/news", "from the app server", receipt="ok")
    assert got.wait(lambda: "ok" in got.receipts)
    assert not got.errors
    c.disconnect()


def test_a_wrong_passcode_is_refused(keyed_broker):
    raw = RawClient(keyed_broker)
    frame = raw.connect(login="app", passcode="guess")
    assert frame.command == "ERROR"
    assert frame.get("message") == "access refused"
    assert raw.wait_closed()
    with pytest.raises(stomp.exception.ConnectFailedException):
        connect(keyed_broker, username="app", passcode="guess")


# ------------------------------------------------------------------ tokens (orbiter/auth)

TOKEN_TOML = f"""
[server]
api_key = "s3cret"
[auth]
secret = "{SECRET}"
[[channel]]
match = "team:*"
subscribe = "token"
client_publish = true
[[channel]]
match = "chat:*"
client_publish = true
"""


@pytest.fixture(scope="module")
def token_broker() -> Iterator[int]:
    srv, port = start_stomp_server(TOKEN_TOML)
    yield port
    srv.stop()


def test_a_token_as_passcode_is_the_identity(token_broker):
    raw = RawClient(token_broker)
    frame = raw.connect(login="ignored", passcode=token("alice", channels=["team:a"]))
    assert frame.command == "CONNECTED"
    assert frame.get("user-name") == "alice"
    raw.frame("SUBSCRIBE", [("id", "1"), ("destination", "/topic/team:a"), ("receipt", "ok")])
    assert raw.next().command == "RECEIPT"
    raw.frame("SEND", [("destination", "/topic/team:a"), ("receipt", "sent")], b"hi")
    frames = [raw.next(), raw.next()]
    assert sorted(f.command for f in frames) == ["MESSAGE", "RECEIPT"]
    # The token lists team:a only.
    raw.frame("SUBSCRIBE", [("id", "2"), ("destination", "/topic/team:b")])
    error = raw.next()
    assert error.command == "ERROR"
    assert error.get("message") == "permission denied"
    assert b"channels" in error.body


@pytest.mark.parametrize(
    ("passcode", "problem"),
    [
        (None, "needs a connection token"),
        ("not-a-token", "login refused"),
        (token("alice", ttl=-10), "expired"),
        (token("alice", key="another-secret-of-thirty-two-bytes!!"), "login refused"),
    ],
)
def test_connect_without_a_valid_token_is_refused(token_broker, passcode, problem):
    raw = RawClient(token_broker)
    frame = raw.connect(**({"passcode": passcode} if passcode else {}))
    assert frame.command == "ERROR"
    assert frame.get("message") == "access refused"
    assert problem in frame.body.decode()
    assert raw.wait_closed()


def test_the_connection_ends_when_its_token_expires(token_broker):
    raw = RawClient(token_broker)
    assert raw.connect(passcode=token("alice", ttl=1.5)).command == "CONNECTED"
    frame = raw.next(timeout=5)
    assert frame.command == "ERROR"
    assert frame.get("message") == "token expired"
    assert raw.wait_closed()


def test_the_api_key_still_admits_app_servers_when_tokens_are_on(token_broker):
    c, got = connect(token_broker, passcode="s3cret")
    c.send("/topic/anything", "app server", receipt="ok")
    assert got.wait(lambda: "ok" in got.receipts)
    assert not got.errors
    c.disconnect()


def test_connections_per_ip_are_limited():
    srv, port = start_stomp_server("[limits]\nmax_connections_per_ip = 2\n")
    try:
        first, second = RawClient(port), RawClient(port)
        assert first.connect().command == "CONNECTED"
        assert second.connect().command == "CONNECTED"
        third = RawClient(port)
        frame = third.next()
        assert frame.command == "ERROR"
        assert frame.get("message") == "too many connections"
        assert b"limits.max_connections_per_ip" in frame.body
        assert third.wait_closed()
        first.close()
        # Once one closes, a new connection is admitted again.
        deadline = time.monotonic() + 5
        while True:
            again = RawClient(port)
            reply = again.connect()
            if reply.command == "CONNECTED" or time.monotonic() > deadline:
                break
            again.close()
            time.sleep(0.1)
        assert reply.command == "CONNECTED"
    finally:
        srv.stop()


def test_queues_wait_for_consumers_that_do_not_read_and_lose_nothing():
    # 300 messages of 32 KiB (about 10 MB) fit the queue's byte budget, raised for the test.
    srv, port = start_stomp_server(
        "[limits]\noutgoing_buffer = 65536\n", stomp_toml="max_queue_bytes = 16777216\n"
    )
    try:
        queue = "/queue/slow"
        slow = RawClient(port)
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect()
        slow.frame("SUBSCRIBE", [("id", "1"), ("destination", queue), ("ack", "client-individual")])
        fast, got = connect(port)
        fast.subscribe(queue, id="1", receipt="s")
        assert got.wait(lambda: "s" in got.receipts)
        producer, got_p = connect(port)
        body = "x" * 32768
        for i in range(300):
            producer.send(queue, f"{i:03d}{body}")
        # The slow consumer's buffers fill; from then on the queue feeds only the fast one,
        # which is never cut as a slow consumer (32 KiB messages, a 64 KiB outgoing buffer).
        deadline = time.monotonic() + 30
        seen = -1
        while len(got.messages) != seen and time.monotonic() < deadline:
            seen = len(got.messages)
            time.sleep(1.0)
        held = 300 - len(got.messages)
        assert held > 0
        assert not got.errors
        assert not got_p.errors
        # When the slow one goes, what it held (never acknowledged) is redelivered.
        slow.close()
        assert got.wait(lambda: len({m.body[:3] for m in got.messages}) == 300, timeout=30)
        redelivered = [m for m in got.messages if m.headers.get("redelivered") == "true"]
        assert len(redelivered) == held
        for c in (fast, producer):
            c.disconnect()
    finally:
        srv.stop()


def test_the_number_of_queues_is_bounded():
    srv, port = start_stomp_server(stomp_toml="max_queues = 2\n")
    try:
        raw = RawClient(port)
        raw.connect()
        for name in ("a", "b"):
            raw.frame("SEND", [("destination", f"/queue/{name}"), ("receipt", name)], b"x")
            assert raw.next().command == "RECEIPT"
        raw.frame("SUBSCRIBE", [("id", "1"), ("destination", "/queue/c")])
        assert "stomp.max_queues" in _error(raw)
    finally:
        srv.stop()


def test_shutdown_tells_every_connection():
    srv, port = start_stomp_server()
    raw = RawClient(port)
    raw.connect()
    srv.stop()
    frame = raw.next()
    assert frame.command == "ERROR"
    assert frame.get("message") == "server shutting down"
    assert raw.wait_closed()


def test_frames_sent_with_connect_use_the_negotiated_escaping(port):
    raw = RawClient(port)
    queue = "/queue/" + unique("pipelined")
    raw.send(
        encode_frame("CONNECT", [("accept-version", "1.2"), ("host", "x")])
        + encode_frame("SUBSCRIBE", [("id", "a:b"), ("destination", queue)], b"", "1.2")
        + encode_frame("SEND", [("destination", queue), ("note", "x:y")], b"m", "1.2")
    )
    assert raw.next().command == "CONNECTED"
    message = raw.next()
    assert message.command == "MESSAGE"
    assert message.get("subscription") == "a:b"
    assert message.get("note") == "x:y"


# ------------------------------------------------------------------ recovery from history


def _publish(srv: RunningServer, channel: str, data: object) -> dict[str, object]:
    request = urllib.request.Request(
        srv.url + "/api/publish",
        data=json.dumps({"channel": channel, "data": data}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        result: dict[str, object] = json.loads(response.read())
        return result


def test_subscribe_since_an_offset_recovers_what_was_missed(broker):
    srv, port = broker
    channel = unique("chat:recover")
    published = [_publish(srv, channel, f"m{i}") for i in range(1, 4)]
    epoch = str(published[0]["epoch"])
    raw = RawClient(port)
    raw.connect()
    raw.frame(
        "SUBSCRIBE",
        [
            ("id", "1"),
            ("destination", f"/topic/{channel}"),
            ("orbiter-since", "1"),
            ("orbiter-epoch", epoch),
            ("receipt", "r"),
        ],
    )
    missed = [raw.next(), raw.next()]
    assert [(f.get("orbiter-offset"), f.body) for f in missed] == [("2", b"m2"), ("3", b"m3")]
    receipt = raw.next()
    assert receipt.command == "RECEIPT"
    assert receipt.get("orbiter-recovered") == "true"
    assert (receipt.get("orbiter-offset"), receipt.get("orbiter-epoch")) == ("3", epoch)
    _publish(srv, channel, "live")
    live = raw.next()
    assert (live.get("orbiter-offset"), live.body) == ("4", b"live")
    # Another epoch cannot be recovered from: the receipt says so and live delivery goes on.
    raw.frame(
        "SUBSCRIBE",
        [
            ("id", "2"),
            ("destination", f"/topic/{channel}"),
            ("orbiter-since", "1"),
            ("orbiter-epoch", "not-the-epoch"),
            ("receipt", "r2"),
        ],
    )
    receipt = raw.next()
    assert receipt.get("orbiter-recovered") == "false"
    raw.frame("SUBSCRIBE", [("id", "3"), ("destination", "/topic/x"), ("orbiter-since", "1")])
    assert "orbiter-epoch must be given together" in _error(raw)
