"""The STOMP frame parser and serialiser: every frame example of the STOMP 1.2
specification, split at every byte boundary, plus escaping, limits and fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orbiter.protocol.stomp import (
    HEART_BEAT_MAX,
    HEART_BEAT_MIN,
    Frame,
    FrameError,
    FrameParser,
    Limits,
    encode_frame,
    escape,
    heart_beat_intervals,
    negotiate_version,
    parse_heart_beat,
    unescape,
)

# (wire bytes with ^@ for NUL, command, headers, body) — the examples in
# https://stomp.github.io/stomp-specification-1.2.html, in the order they appear.
SPEC_EXAMPLES = [
    (
        "MESSAGE\nfoo:World\nfoo:Hello\n\n^@",
        "MESSAGE",
        [("foo", "World"), ("foo", "Hello")],
        b"",
    ),
    ("CONNECT\naccept-version:1.2\nhost:stomp.github.org\n\n^@", "CONNECT",
     [("accept-version", "1.2"), ("host", "stomp.github.org")], b""),
    ("CONNECTED\nversion:1.2\n\n^@", "CONNECTED", [("version", "1.2")], b""),
    ("CONNECT\naccept-version:1.0,1.1,2.0\nhost:stomp.github.org\n\n^@", "CONNECT",
     [("accept-version", "1.0,1.1,2.0"), ("host", "stomp.github.org")], b""),
    ("CONNECTED\nversion:1.1\n\n^@", "CONNECTED", [("version", "1.1")], b""),
    ("ERROR\nversion:1.2,2.1\ncontent-type:text/plain\n\nSupported protocol versions are 1.2 2.1^@",
     "ERROR", [("version", "1.2,2.1"), ("content-type", "text/plain")],
     b"Supported protocol versions are 1.2 2.1"),
    ("CONNECT\naccept-version:1.2\nhost:stomp.github.org\nheart-beat:0,1000\n\n^@", "CONNECT",
     [("accept-version", "1.2"), ("host", "stomp.github.org"), ("heart-beat", "0,1000")], b""),
    ("SEND\ndestination:/queue/a\ncontent-type:text/plain\n\nhello queue a\n^@", "SEND",
     [("destination", "/queue/a"), ("content-type", "text/plain")], b"hello queue a\n"),
    ("SUBSCRIBE\nid:0\ndestination:/queue/foo\nack:client\n\n^@", "SUBSCRIBE",
     [("id", "0"), ("destination", "/queue/foo"), ("ack", "client")], b""),
    ("UNSUBSCRIBE\nid:0\n\n^@", "UNSUBSCRIBE", [("id", "0")], b""),
    ("ACK\nid:12345\ntransaction:tx1\n\n^@", "ACK", [("id", "12345"), ("transaction", "tx1")], b""),
    ("NACK\nid:12345\ntransaction:tx1\n\n^@", "NACK",
     [("id", "12345"), ("transaction", "tx1")], b""),
    ("BEGIN\ntransaction:tx1\n\n^@", "BEGIN", [("transaction", "tx1")], b""),
    ("COMMIT\ntransaction:tx1\n\n^@", "COMMIT", [("transaction", "tx1")], b""),
    ("ABORT\ntransaction:tx1\n\n^@", "ABORT", [("transaction", "tx1")], b""),
    ("DISCONNECT\nreceipt:77\n\n^@", "DISCONNECT", [("receipt", "77")], b""),
    ("RECEIPT\nreceipt-id:77\n\n^@", "RECEIPT", [("receipt-id", "77")], b""),
    ("SEND\ndestination:/queue/a\nreceipt:message-12345\n\nhello queue a^@", "SEND",
     [("destination", "/queue/a"), ("receipt", "message-12345")], b"hello queue a"),
    ("MESSAGE\nsubscription:0\nmessage-id:007\ndestination:/queue/a\ncontent-type:text/plain\n\n"
     "hello queue a^@", "MESSAGE",
     [("subscription", "0"), ("message-id", "007"), ("destination", "/queue/a"),
      ("content-type", "text/plain")], b"hello queue a"),
    ("RECEIPT\nreceipt-id:message-12345\n\n^@", "RECEIPT", [("receipt-id", "message-12345")], b""),
    ("ERROR\nreceipt-id:message-12345\ncontent-type:text/plain\ncontent-length:170\n"
     "message:malformed frame received\n\nThe message:\n-----\nMESSAGE\ndestined:/queue/a\n"
     "receipt:message-12345\n\nHello queue a!\n-----\nDid not contain a destination header, "
     "which is REQUIRED\nfor message propagation.\n^@", "ERROR",
     [("receipt-id", "message-12345"), ("content-type", "text/plain"), ("content-length", "170"),
      ("message", "malformed frame received")],
     b"The message:\n-----\nMESSAGE\ndestined:/queue/a\nreceipt:message-12345\n\nHello queue a!"
     b"\n-----\nDid not contain a destination header, which is REQUIRED\nfor message "
     b"propagation.\n"),
]  # fmt: skip


def wire(text: str) -> bytes:
    return text.replace("^@", "\x00").encode()


def parse_split(data: bytes, at: int, version: str = "1.2") -> list[Frame]:
    parser = FrameParser(version=version)
    frames = parser.feed(data[:at])
    frames += parser.feed(data[at:])
    assert parser.buffered == 0
    return frames


@pytest.mark.parametrize(("text", "command", "headers", "body"), SPEC_EXAMPLES)
def test_spec_example_parses_the_same_split_at_every_byte(text, command, headers, body):
    data = wire(text)
    for at in range(len(data) + 1):
        frames = parse_split(data, at)
        assert len(frames) == 1, at
        frame = frames[0]
        assert (frame.command, list(frame.headers), frame.body) == (command, headers, body)


def test_spec_example_byte_by_byte_with_crlf_and_heartbeats_between():
    data = b"\n\r\n".join(wire(t) for t, *_ in SPEC_EXAMPLES)
    parser = FrameParser(version="1.2")
    frames = []
    for i in range(len(data)):
        frames += parser.feed(data[i : i + 1])
    assert [f.command for f in frames] == [c for _, c, *_ in SPEC_EXAMPLES]


def test_repeated_header_first_wins():
    (frame,) = FrameParser().feed(wire("MESSAGE\nfoo:World\nfoo:Hello\n\n^@"))
    assert frame.get("foo") == "World"


def test_crlf_line_endings():
    data = b"SEND\r\ndestination:/queue/a\r\nx:y\r\n\r\nbody\x00"
    for at in range(len(data) + 1):
        (frame,) = parse_split(data, at)
        assert frame.get("destination") == "/queue/a"
        assert frame.get("x") == "y"
        assert frame.body == b"body"


def test_content_length_body_may_hold_nul():
    data = b"SEND\ndestination:/q\ncontent-length:5\n\na\x00b\x00c\x00"
    for at in range(len(data) + 1):
        (frame,) = parse_split(data, at)
        assert frame.body == b"a\x00b\x00c"


def test_content_length_not_followed_by_nul_is_an_error():
    with pytest.raises(FrameError, match="NUL"):
        FrameParser().feed(b"SEND\ncontent-length:2\n\nabc\x00")


@pytest.mark.parametrize(
    ("version", "raw", "decoded"),
    [
        ("1.1", "a\\nb\\cc\\\\d", "a\nb:c\\d"),
        ("1.2", "a\\rb\\nc", "a\rb\nc"),
    ],
)
def test_header_escapes(version, raw, decoded):
    data = f"MESSAGE\nk:{raw}\n\n\x00".encode()
    (frame,) = FrameParser(version=version).feed(data)
    assert frame.get("k") == decoded
    assert unescape(escape(decoded, version), version) == decoded


def test_no_unescaping_in_1_0_nor_in_connect_frames():
    (frame,) = FrameParser(version="1.0").feed(b"MESSAGE\nk:a\\nb\n\n\x00")
    assert frame.get("k") == "a\\nb"
    (frame,) = FrameParser(version="1.2").feed(b"CONNECT\nlogin:a\\tb\n\n\x00")
    assert frame.get("login") == "a\\tb"


@pytest.mark.parametrize("bad", ["a\\tb", "a\\", "\\x"])
def test_undefined_escape_is_an_error(bad):
    with pytest.raises(FrameError, match="escape"):
        FrameParser(version="1.2").feed(f"SEND\nk:{bad}\n\n\x00".encode())


def test_backslash_r_is_undefined_in_1_1():
    with pytest.raises(FrameError, match="escape"):
        FrameParser(version="1.1").feed(b"SEND\nk:a\\rb\n\n\x00")


def test_encode_escapes_per_version_and_roundtrips():
    headers = [("destination", "/topic/chat:lobby"), ("note", "a\nb\\c")]
    for version in ("1.1", "1.2"):
        data = encode_frame("MESSAGE", headers, b"x\x00y", version)
        (frame,) = FrameParser(version=version).feed(data)
        assert list(frame.headers)[:2] == headers
        assert frame.get("content-length") == "3"
        assert frame.body == b"x\x00y"
    data = encode_frame("MESSAGE", headers, b"", "1.0")
    (frame,) = FrameParser(version="1.0").feed(data)
    assert frame.get("destination") == "/topic/chat:lobby"
    assert frame.get("note") == "a b\\c"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"SEND\nno colon here\n\n\x00", "no colon"),
        (b"SEND\n:value\n\n\x00", "empty name"),
        (b"SEND\ncontent-length:abc\n\n\x00", "content-length"),
        (b"SEND\ncontent-length:999999\n\n\x00", "limit"),
        (b"\xff\xfe\n\n\x00", "UTF-8"),
        (b"\rX", "carriage return"),
    ],
)
def test_malformed_frames(data, problem):
    with pytest.raises(FrameError, match=problem):
        FrameParser(Limits(max_body=1000)).feed(data)


def test_limits_headers_lines_and_bodies():
    limits = Limits(max_headers=3, max_header_line=20, max_body=10)
    with pytest.raises(FrameError, match="more than 3 headers"):
        FrameParser(limits).feed(b"SEND\na:1\nb:2\nc:3\nd:4\n\n\x00")
    with pytest.raises(FrameError, match="longer than 20"):
        FrameParser(limits).feed(b"SEND\na:" + b"x" * 30 + b"\n\n\x00")
    with pytest.raises(FrameError, match="larger than 10"):
        FrameParser(limits).feed(b"SEND\n\n" + b"x" * 11 + b"\x00")
    # Without a NUL the body grows only up to the limit, then it is an error.
    parser = FrameParser(limits)
    assert parser.feed(b"SEND\n\n" + b"x" * 10) == []
    with pytest.raises(FrameError, match="NUL missing"):
        parser.feed(b"x")
    # Headers that never end are bounded too.
    with pytest.raises(FrameError, match="headers longer"):
        FrameParser(limits).feed(b"SEND\n" + b"a:b\n" * 30)


def test_negotiation():
    assert negotiate_version(None) == "1.0"
    assert negotiate_version("1.0,1.1,2.0") == "1.1"
    assert negotiate_version("1.2") == "1.2"
    assert negotiate_version("2.0,2.1") is None
    assert parse_heart_beat(None) == (0, 0)
    assert parse_heart_beat("0,1000") == (0, 1000)
    with pytest.raises(FrameError, match="heart-beat"):
        parse_heart_beat("1000")
    # client cx,cy ; server sx,sy -> (server sends every, client must send within)
    assert heart_beat_intervals((4000, 5000), (10000, 2000)) == (10000, 4000)
    assert heart_beat_intervals((0, 5000), (10000, 2000)) == (10000, 0)
    assert heart_beat_intervals((4000, 0), (0, 0)) == (0, 0)


header_text = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20
)
#: Header names hold no control character (the parser refuses them).
name_text = st.text(st.characters(exclude_categories=["Cs", "Cc"]), min_size=1, max_size=20)


@settings(max_examples=300, deadline=None)
@given(
    command=st.sampled_from(["SEND", "MESSAGE", "ERROR", "SUBSCRIBE"]),
    headers=st.lists(st.tuples(name_text, header_text), max_size=6),
    body=st.binary(max_size=200),
    version=st.sampled_from(["1.1", "1.2"]),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=5),
)
def test_fuzz_roundtrip_split_anywhere(command, headers, body, version, cuts):
    headers = [(k, v) for k, v in headers if k != "content-length"]
    if version == "1.1":
        # 1.1 has no escape for CR: the serialiser sends a space instead.
        headers = [(k.replace("\r", " "), v.replace("\r", " ")) for k, v in headers]
    data = encode_frame(command, headers, body, version)
    parser = FrameParser(version=version)
    frames = []
    last = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        frames += parser.feed(data[last:cut])
        last = cut
    frames += parser.feed(data[last:])
    assert len(frames) == 1
    assert list(frames[0].headers)[: len(headers)] == headers
    assert frames[0].body == body


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["1.0", "1.1", "1.2"]))
def test_fuzz_garbage_raises_only_frame_error(data, version):
    parser = FrameParser(Limits(max_headers=8, max_header_line=64, max_body=128), version)
    message = ""
    try:
        for frame in parser.feed(data):
            assert frame.command
    except FrameError as exc:
        message = str(exc)
        assert message


def test_pause_after_connect_leaves_the_rest_for_the_negotiated_version():
    data = b"CONNECT\naccept-version:1.2\n\n\x00SUBSCRIBE\nid:a\\cb\n\n\x00"
    parser = FrameParser(pause_after_connect=True)
    (connect,) = parser.feed(data)
    assert connect.command == "CONNECT"
    parser.version = "1.2"
    (subscribe,) = parser.feed(b"")
    assert subscribe.get("id") == "a:b"


# ², 1¹, Arabic-Indic 10, more digits than int() takes
@pytest.mark.parametrize("digits", ["\u00b2", "1\u00b9", "\u0661\u0660", "9" * 5000])
def test_numbers_are_ascii_digits_only(digits):
    data = f"SEND\ncontent-length:{digits}\n\n\x00".encode()
    with pytest.raises(FrameError, match="content-length"):
        FrameParser().feed(data)
    with pytest.raises(FrameError, match="heart-beat"):
        parse_heart_beat(f"{digits},0")


def test_first_headers_keeps_each_name_once_in_order():
    frame = Frame("SEND", [("b", "1"), ("a", "2"), ("b", "3")])
    assert frame.first_headers() == [("b", "1"), ("a", "2")]


@pytest.mark.parametrize(
    "head",
    [
        b"SEND\ndestination:/queue/a\nna\x00me:v\n\n",  # NUL in a header name
        b"SEND\ndestination:/queue/a\nname:v\x00\n\n",  # NUL in a header value
        b"SE\x00ND\ndestination:/queue/a\n\n",  # NUL in the command
    ],
)
@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_a_nul_octet_before_the_body_is_refused(head, version):
    with pytest.raises(FrameError, match="a NUL octet in the frame's command or headers"):
        FrameParser(version=version).feed(head + b"\x00")


@pytest.mark.parametrize("name", ["a\x01b", "tab\tname", "esc\x1b", "del\x7f", "bell\x07"])
@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_a_control_character_in_a_header_name_is_refused(name, version):
    data = f"SEND\ndestination:/queue/a\n{name}:v\n\n\x00".encode()
    with pytest.raises(FrameError, match="holds a control character"):
        FrameParser(version=version).feed(data)


def test_an_escaped_line_feed_in_a_header_name_is_refused_once_decoded():
    with pytest.raises(FrameError, match="holds a control character"):
        FrameParser(version="1.2").feed(b"SEND\na\\nb:v\n\n\x00")
    # In a value it is what the escape is for.
    (frame,) = FrameParser(version="1.2").feed(b"SEND\nname:a\\nb\tc\n\n\x00")
    assert frame.get("name") == "a\nb\tc"


def test_what_real_clients_send_still_parses():
    # Headers as stomp.py and @stomp/stompjs write them: non-ASCII names and values,
    # escaped colons, a value with a tab, CRLF line ends.
    data = (
        "SEND\r\ndestination:/queue/caf\u00e9\r\nx-\u00fcml\u00e4ut:\u00e9t\u00e9\r\n"
        "time:12\\c30\r\nnote:a\tb\r\ncontent-length:2\r\n\r\nhi\x00"
    ).encode()
    (frame,) = FrameParser(version="1.2").feed(data)
    assert frame.get("x-\u00fcml\u00e4ut") == "\u00e9t\u00e9"
    assert frame.get("time") == "12:30"
    assert frame.get("note") == "a\tb"
    assert frame.body == b"hi"


def test_heart_beats_are_held_to_a_range():
    assert (HEART_BEAT_MIN, HEART_BEAT_MAX) == (100, 3_600_000)
    assert parse_heart_beat("999999999999,1") == (3_600_000, 100)
    assert parse_heart_beat("3600001,99") == (3_600_000, 100)
    assert parse_heart_beat("3600000,100") == (3_600_000, 100)
    assert parse_heart_beat("0,0") == (0, 0)  # none stays none
    assert parse_heart_beat("1,0") == (100, 0)
    assert parse_heart_beat(" 5000 , 10000 ") == (5000, 10000)
    for bad in ("-1,0", "0,-5", "a,b", "1.5,2", "10000", "1,2,3", ""):
        with pytest.raises(FrameError, match="heart-beat"):
            parse_heart_beat(bad)
