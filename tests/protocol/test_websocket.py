"""The sans-I/O RFC 6455 server connection: frames from a client in, messages out."""

from __future__ import annotations

import struct
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from orbiter.protocol.websocket import (
    Event,
    Failed,
    Message,
    PeerClosed,
    ServerConnection,
    text_frame,
)

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
MASK = b"\x37\xfa\x21\x3d"


def frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bytes | None = MASK, rsv: int = 0
) -> bytes:
    """A frame as a client sends it: masked unless ``mask`` is None."""
    first = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    bit = 0x80 if mask is not None else 0
    if n < 126:
        head = bytes((first, bit | n))
    elif n < 65536:
        head = struct.pack("!BBH", first, bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, bit | 127, n)
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()


def feed(conn: ServerConnection, *chunks: bytes) -> tuple[list[Event], bytes]:
    """Feed ``chunks`` one by one, taking every event; the events and the bytes to send."""
    events: list[Event] = []
    out = b""
    for chunk in chunks:
        conn.receive_data(chunk)
        while (event := conn.next_event()) is not None:
            events.append(event)
            out += conn.data_to_send()
        out += conn.data_to_send()
    return events, out


def summary(events: list[Event]) -> list[tuple[str, object]]:
    result: list[tuple[str, object]] = []
    for event in events:
        if isinstance(event, Message):
            result.append(("message", event.data))
        else:
            result.append((type(event).__name__, (event.code, event.reason)))
    return result


def server_close_code(out: bytes) -> int:
    """The code of the (unmasked) close frame orbiter wrote at the end of ``out``."""
    at = out.rfind(b"\x88")
    assert at >= 0, out
    return int(struct.unpack("!H", out[at + 2 : at + 4])[0])


def test_text_and_binary_messages() -> None:
    conn = ServerConnection(1024)
    events, out = feed(conn, frame(TEXT, b'{"op":"ping"}') + frame(BINARY, b"\x00\xff"))
    assert summary(events) == [("message", '{"op":"ping"}'), ("message", b"\x00\xff")]
    assert out == b""
    assert conn.open
    assert not conn.closed


def test_a_stream_split_at_every_byte_gives_the_same_events() -> None:
    stream = (
        frame(TEXT, "héllo".encode())
        + frame(TEXT, b"ab", fin=False)
        + frame(PING, b"p1")
        + frame(CONT, "c\u00e9".encode()[:2], fin=False)
        + frame(CONT, "c\u00e9".encode()[2:])
        + frame(BINARY, bytes(range(200)))
        + frame(CLOSE, close_payload(1000, "bye"))
    )
    whole_events, whole_out = feed(ServerConnection(1024), stream)
    assert summary(whole_events) == [
        ("message", "héllo"),
        ("message", "abc\u00e9"),
        ("message", bytes(range(200))),
        ("PeerClosed", (1000, "bye")),
    ]
    assert whole_out == b"\x8a\x02p1" + b"\x88\x05" + close_payload(1000, "bye")
    for cut in range(1, len(stream)):
        events, out = feed(ServerConnection(1024), stream[:cut], stream[cut:])
        assert summary(events) == summary(whole_events), cut
        assert out == whole_out, cut
    events, out = feed(ServerConnection(1024), *(stream[i : i + 1] for i in range(len(stream))))
    assert summary(events) == summary(whole_events)
    assert out == whole_out


def test_unmasked_frames_from_a_client_are_a_protocol_error() -> None:
    conn = ServerConnection(1024)
    events, out = feed(conn, frame(TEXT, b"hi", mask=None))
    assert [type(e) for e in events] == [Failed]
    assert isinstance(events[0], Failed)
    assert events[0].code == 1002
    assert server_close_code(out) == 1002
    assert conn.closed
    assert not conn.open
    assert feed(conn, frame(TEXT, b"more")) == ([], b"")


def test_control_frames_between_fragments_are_answered_and_the_message_kept() -> None:
    conn = ServerConnection(1024)
    events, out = feed(
        conn,
        frame(TEXT, b"one ", fin=False),
        frame(PING, b"x"),
        frame(PONG, b"y"),
        frame(CONT, b"two ", fin=False),
        frame(PING),
        frame(CONT, b"three"),
    )
    assert summary(events) == [("message", "one two three")]
    assert out == b"\x8a\x01x" + b"\x8a\x00"


def test_the_message_size_limit_is_inclusive_and_counts_bytes() -> None:
    events, _ = feed(ServerConnection(10), frame(TEXT, b"x" * 10))
    assert summary(events) == [("message", "x" * 10)]
    events, _ = feed(ServerConnection(10), frame(TEXT, "é".encode() * 5))
    assert summary(events) == [("message", "é" * 5)]
    conn = ServerConnection(10)
    events, out = feed(conn, frame(TEXT, "é".encode() * 6))
    assert summary(events) == [
        ("Failed", (1009, "message over 10 bytes (limits.max_message_size)"))
    ]
    assert server_close_code(out) == 1009


def test_an_oversize_message_fails_as_its_fragments_arrive_and_the_close_handshake_goes_on() -> (
    None
):
    conn = ServerConnection(10)
    events, out = feed(conn, frame(BINARY, b"x" * 6, fin=False), frame(CONT, b"x" * 6))
    assert [e.code for e in events if isinstance(e, Failed)] == [1009]
    assert server_close_code(out) == 1009
    assert not conn.open
    assert not conn.closed
    # What the client still sends is dropped; its close frame ends the handshake.
    events, out = feed(conn, frame(TEXT, b"late"), frame(CLOSE, close_payload(1000)))
    assert summary(events) == [("PeerClosed", (1000, ""))]
    assert out == b""
    assert conn.closed


def test_a_huge_frame_fails_once_past_the_limit_not_at_its_end() -> None:
    conn = ServerConnection(65536)
    header = struct.pack("!BBQ", 0x82, 0x80 | 127, 10**12) + MASK
    events, _out = feed(conn, header, b"a" * 70000)
    assert [e.code for e in events if isinstance(e, Failed)] == [1009]


def test_bad_opcodes_reserved_bits_and_stray_continuations_are_protocol_errors() -> None:
    for bad in (
        frame(0x3, b"x"),
        frame(0xB, b""),
        frame(TEXT, b"x", rsv=0x40),
        frame(CONT, b"x"),
        frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"),
        frame(PING, b"p" * 126),
        frame(PING, b"p", fin=False),
        frame(CLOSE, b"\x03"),
        frame(CLOSE, close_payload(999)),
    ):
        conn = ServerConnection(1024)
        events, out = feed(conn, bad)
        assert [e.code for e in events if isinstance(e, Failed)] == [1002], bad
        assert server_close_code(out) == 1002
        assert conn.closed


def test_invalid_utf8_fails_with_1007_even_split_across_fragments() -> None:
    for chunks in (
        [frame(TEXT, b"ok \xff")],
        [frame(TEXT, b"\xc3", fin=False), frame(CONT, b"(")],
        [frame(TEXT, b"\xed\xa0\x80")],  # a UTF-16 surrogate
        [frame(CLOSE, struct.pack("!H", 1000) + b"\xff")],
    ):
        conn = ServerConnection(1024)
        events, out = feed(conn, *chunks)
        assert [e.code for e in events if isinstance(e, Failed)] == [1007], chunks
        assert server_close_code(out) == 1007


def test_a_close_from_the_client_is_echoed() -> None:
    conn = ServerConnection(1024)
    events, out = feed(conn, frame(CLOSE, close_payload(4000, "done")))
    assert summary(events) == [("PeerClosed", (4000, "done"))]
    assert out == b"\x88\x06" + close_payload(4000, "done")
    assert conn.closed
    events, out = feed(ServerConnection(1024), frame(CLOSE))
    assert summary(events) == [("PeerClosed", (1005, ""))]
    assert out == b"\x88\x00"


def test_a_close_from_the_server_waits_for_the_clients() -> None:
    conn = ServerConnection(1024)
    assert conn.ping() == b"\x89\x00"
    sent = conn.close(3001, "outgoing buffer full")
    assert sent == b"\x88\x16" + close_payload(3001, "outgoing buffer full")
    assert not conn.open
    assert not conn.closed
    assert conn.close(1000, "again") == b""
    assert conn.ping() == b""
    events, out = feed(
        conn, frame(TEXT, b"ignored"), frame(PING), frame(CLOSE, close_payload(3001))
    )
    assert summary(events) == [("PeerClosed", (3001, ""))]
    assert out == b""  # no pong once closing, no second close frame
    assert conn.closed


def test_a_long_close_reason_is_cut_to_fit_a_control_frame() -> None:
    frame_ = ServerConnection(1024).close(3503, "é" * 100)
    assert frame_[1] <= 125
    assert frame_[4:].decode() == "é" * 61


def test_text_frame_is_what_a_client_parses() -> None:
    for size in (0, 1, 100, 125, 126, 200, 65535, 65536):
        payload = b"x" * size
        if size < 126:  # RFC 6455 section 5.2: the length in 7 bits, or 126 + 16, 127 + 64
            header = bytes((0x81, size))
        elif size < 65536:
            header = b"\x81\x7e" + size.to_bytes(2, "big")
        else:
            header = b"\x81\x7f" + size.to_bytes(8, "big")
        assert text_frame(payload) == header + payload


@st.composite
def conversations(draw: st.DrawFn) -> tuple[list[str | bytes], bytes, list[int]]:
    messages: list[str | bytes] = draw(
        st.lists(st.one_of(st.text(max_size=40), st.binary(max_size=40)), max_size=8)
    )
    stream = b""
    for message in messages:
        data = message.encode() if isinstance(message, str) else message
        cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=3)))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        for i, piece in enumerate(pieces):
            opcode = (TEXT if isinstance(message, str) else BINARY) if i == 0 else CONT
            stream += frame(
                opcode,
                piece,
                fin=i == len(pieces) - 1,
                mask=draw(st.binary(min_size=4, max_size=4)),
            )
            if draw(st.booleans()):
                stream += frame(PING, draw(st.binary(max_size=5)))
    splits = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    return messages, stream, splits


@settings(max_examples=300, deadline=None)
@given(conversations())
def test_any_fragmentation_and_chunking_gives_the_messages_in_order(
    case: tuple[list[str | bytes], bytes, list[int]],
) -> None:
    messages, stream, splits = case
    chunks = [stream[a:b] for a, b in zip([0, *splits], [*splits, len(stream)], strict=True)]
    events, _ = feed(ServerConnection(1000), *chunks)
    assert [e.data for e in events if isinstance(e, Message)] == messages
    assert not any(isinstance(e, Failed | PeerClosed) for e in events)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.lists(st.integers(0, 200), max_size=4))
def test_garbage_never_raises(data: bytes, splits: list[int]) -> None:
    conn = ServerConnection(64)
    cuts = sorted(min(s, len(data)) for s in splits)
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    events, _ = feed(conn, *chunks)
    failures = [e for e in events if isinstance(e, Failed)]
    if failures:
        assert failures[0].code in (1002, 1007, 1009)


def test_close_codes_a_client_may_not_send_are_protocol_errors() -> None:
    for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535):
        events, _ = feed(ServerConnection(1024), frame(CLOSE, close_payload(code)))
        assert [e.code for e in events if isinstance(e, Failed)] == [1002], code
    for code in (1000, 1001, 1003, 1007, 1011, 1012, 1014, 3000, 4999):
        events, _ = feed(ServerConnection(1024), frame(CLOSE, close_payload(code)))
        assert summary(events) == [("PeerClosed", (code, ""))], code


def test_a_64_bit_length_with_its_top_bit_set_is_a_protocol_error() -> None:
    events, _ = feed(ServerConnection(1024), struct.pack("!BBQ", 0x82, 0x80 | 127, 1 << 63) + MASK)
    assert [e.code for e in events if isinstance(e, Failed)] == [1002]


def test_an_oversize_frame_is_dropped_unread_and_what_follows_still_parsed() -> None:
    conn = ServerConnection(10)
    big = frame(BINARY, bytes(1000))
    events, out = feed(conn, big[:7], big[7:300])
    assert [e.code for e in events if isinstance(e, Failed)] == [1009]
    assert server_close_code(out) == 1009
    # The rest of that frame, a message (dropped: closing) and the client's close.
    events, out = feed(conn, big[300:] + frame(TEXT, b"late"), frame(CLOSE, close_payload(1000)))
    assert summary(events) == [("PeerClosed", (1000, ""))]
    assert out == b""
    assert conn.closed


def test_the_pings_of_one_read_get_one_pong_for_the_latest() -> None:
    conn = ServerConnection(1024)
    pings = b"".join(frame(PING, b"%d" % i) for i in range(1000))
    events, out = feed(conn, pings)
    assert events == []
    assert out == b"\x8a\x03999"
    # Of each read, its latest ping is answered.
    events, out = feed(conn, frame(PING, b"a") + frame(PING, b"b"), frame(PING, b"c"))
    assert out == b"\x8a\x01b\x8a\x01c"


def test_a_pong_not_yet_taken_goes_out_before_the_close_frame() -> None:
    conn = ServerConnection(1024)
    events, out = feed(conn, frame(PING, b"x") + frame(PING, b"y") + frame(CLOSE))
    assert summary(events) == [("PeerClosed", (1005, ""))]
    assert out == b"\x8a\x01y\x88\x00"
    conn = ServerConnection(1024)
    events, out = feed(conn, frame(PING, b"z") + frame(TEXT, b"\xff"))
    assert [e.code for e in events if isinstance(e, Failed)] == [1007]
    assert out.startswith(b"\x8a\x01z\x88")


def test_a_frame_of_a_64_bit_length_fed_a_byte_at_a_time_then_what_follows() -> None:
    big = bytes(range(256)) * 300  # 76,800 bytes: a 64-bit length
    stream = frame(BINARY, big) + frame(PING, b"p") + frame(TEXT, b"next")
    conn = ServerConnection(100_000)
    events, out = feed(conn, *(stream[i : i + 1] for i in range(len(stream))))
    assert summary(events) == [("message", big), ("message", "next")]
    assert out == b"\x8a\x01p"
    # Cut inside the header or the payload (or at its end), then a read that ends
    # inside the ping or inside the next message.
    frame_end = len(stream) - 17
    for cut in (1, 9, 14, 15, 5000, frame_end - 1, frame_end):
        for end in (frame_end + 3, len(stream) - 5):
            chunks = stream[:cut], stream[cut:end], stream[end:]
            events, out = feed(ServerConnection(100_000), *chunks)
            assert summary(events) == [("message", big), ("message", "next")], (cut, end)
            assert out == b"\x8a\x01p", (cut, end)


def test_a_message_trickled_in_small_pieces_is_gathered_in_time_linear_in_its_size() -> None:
    payload = b"x" * 2_000_000
    data = struct.pack("!BBQ", 0x82, 0x80 | 127, len(payload)) + bytes(4) + payload  # mask 0
    conn = ServerConnection(len(payload))
    started = time.process_time()
    for at in range(0, len(data), 64):  # each piece as a read, each read looked at
        conn.receive_data(data[at : at + 64])
        event = conn.next_event()
    spent = time.process_time() - started
    assert isinstance(event, Message)
    assert event.data == payload
    # 31,250 pieces: rejoined to what came before at each, 31 GB would be copied.
    assert spent < 1.0, spent


def test_the_frame_limit_stops_parsing_until_the_count_is_reset() -> None:
    conn = ServerConnection(1000)
    conn.frame_limit = 2
    events, out = feed(conn, frame(PING, b"a") + frame(TEXT, b"one") + frame(TEXT, b"two"))
    assert summary(events) == [("message", "one")]  # the ping and "one": two frames
    assert out == bytes((0x8A, 1)) + b"a"
    assert conn.starved
    assert conn.next_event() is None  # nothing more until the count starts again
    conn.frames = 0
    assert not conn.starved
    events, _ = feed(conn, b"")
    assert summary(events) == [("message", "two")]
    assert conn.frames == 1
    assert not conn.starved


def test_a_frame_still_arriving_is_not_starved() -> None:
    conn = ServerConnection(1000)
    conn.frame_limit = 0
    conn.receive_data(frame(TEXT, b"partial")[:4])
    assert conn.next_event() is None
    assert conn.starved  # its first bytes wait for the count, not for more bytes
    fresh = ServerConnection(1000)
    fresh.frame_limit = 0
    assert not fresh.starved  # nothing received, nothing waiting
