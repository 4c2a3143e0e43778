"""pyorbited's Orbit 1.0 line protocol, without a network."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orbiter.protocol.pyorbited import (
    EventRequest,
    OrbitParser,
    OrbitProtocolError,
    failure,
    success,
)


def as_pyorbited_sends(recipients: list[str], body: object, request_id: int = 1) -> bytes:
    """The bytes pyorbited.simple.Client.event writes, in the order it writes them."""
    encoded = json.dumps(body)
    lines = ["Orbit 1.0", "Event", f"id: {request_id}"]
    lines += [f"recipient: {r}" for r in recipients]
    lines += [f"length: {len(encoded)}", ""]
    return "".join(line + "\r\n" for line in lines).encode() + encoded.encode()


def test_one_event() -> None:
    data = as_pyorbited_sends(["alice, 0, /chat", "bob, 0, /chat"], "<b>hi</b>")
    assert OrbitParser(1024, 4096).feed(data) == [
        EventRequest("Orbit 1.0", "1", ("alice, 0, /chat", "bob, 0, /chat"), b'"<b>hi</b>"')
    ]


def test_split_at_every_byte_and_pipelined() -> None:
    data = as_pyorbited_sends(["a, 0, /x"], {"n": 1}, 1) + as_pyorbited_sends(["b, 0, /y"], [2], 2)
    for cut in range(len(data) + 1):
        parser = OrbitParser(1024, 4096)
        got = parser.feed(data[:cut]) + parser.feed(data[cut:])
        assert [(r.id, r.recipients, r.body) for r in got] == [
            ("1", ("a, 0, /x",), b'{"n": 1}'),
            ("2", ("b, 0, /y",), b"[2]"),
        ]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"HTTP/1.1\r\n", "version line"),
        (b"Orbit 1.0\r\nCONNECT\r\n", "unknown request type"),
        (b"Orbit 1.0\r\nEvent\r\nid 1\r\n", "name: value"),
        (b"Orbit 1.0\r\nEvent\r\nid: 1\r\n\r\n", "no 'length'"),
        (b"Orbit 1.0\r\nEvent\r\nlength: 1\r\n\r\n", "no 'id'"),
        (b"Orbit 1.0\r\nEvent\r\nid: 1\r\nlength: -1\r\n", "not a number"),
        (
            b"Orbit 1.0\r\nEvent\r\nid: 1\r\nlength: 2000\r\n",
            "more than 1024 bytes \\(pyorbited.max_body\\)",
        ),
        (b"Orbit 1.0\r\n" + b"x" * 9000, "longer than"),
        (b"Orbit 1.0\r\nEvent\r\nid: \xff\r\n", "not UTF-8"),
    ],
)
def test_errors(data: bytes, words: str) -> None:
    with pytest.raises(OrbitProtocolError, match=words):
        OrbitParser(1024, 4096).feed(data)


def test_answers_as_the_03_daemon_wrote_them() -> None:
    assert success("7") == b"Success\r\nid: 7\r\n\r\n"
    assert failure("7", "Failed to reach one or more recipients", ("alice, 0, /chat",)) == (
        b"Failure\r\nid: 7\r\nmsg: Failed to reach one or more recipients\r\n"
        b"recipient: (alice, 0, /chat)\r\n\r\n"
    )


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_fail_cleanly(data: bytes) -> None:
    parser = OrbitParser(64, 4096)
    try:
        for i in range(0, len(data), 7):
            parser.feed(data[i : i + 7])
    except OrbitProtocolError:
        pass


# ², Arabic-Indic 10, more digits than int() takes
@pytest.mark.parametrize("digits", ["\u00b2", "\u0661\u0660", "9" * 5000])
def test_length_is_ascii_digits_only(digits: str) -> None:
    data = f"Orbit 1.0\r\nEvent\r\nid: 1\r\nlength: {digits}\r\n".encode()
    with pytest.raises(OrbitProtocolError, match=r"not a number|pyorbited.max_body"):
        OrbitParser(1024, 4096).feed(data)


def request_of_size(size: int, body_size: int = 2) -> bytes:
    """A request of exactly ``size`` bytes: recipients padded out, a ``body_size`` body."""
    head = b"Orbit 1.0\r\nEvent\r\nid: 1\r\n"
    tail = f"length: {body_size}\r\n\r\n".encode() + b"x" * body_size
    room = size - len(head) - len(tail)
    lines = []
    while room > 0:  # "recipient: " + value + CRLF, each line under MAX_LINE
        take = min(room, 4000)
        if room - take and room - take < 20:
            take -= 20  # leave room for one more whole line
        lines.append(b"recipient: " + b"a" * (take - 13) + b"\r\n")
        room -= take
    data = head + b"".join(lines) + tail
    assert len(data) == size
    return data


@pytest.mark.parametrize("body_size", [2, 5000])
def test_a_request_of_exactly_max_request_bytes_is_read(body_size: int) -> None:
    data = request_of_size(20_000, body_size)
    for chunk in (len(data), 1000, 1):
        parser = OrbitParser(10_000, 20_000)
        got = [r for i in range(0, len(data), chunk) for r in parser.feed(data[i : i + chunk])]
        assert len(got) == 1
        assert len(got[0].body) == body_size
        # ... and the next request is measured on its own
        assert len(parser.feed(data)) == 1


@pytest.mark.parametrize("body_size", [2, 5000])
def test_one_byte_more_than_max_request_is_refused_naming_the_key(body_size: int) -> None:
    data = request_of_size(20_001, body_size)
    parser = OrbitParser(10_000, 20_000)
    with pytest.raises(
        OrbitProtocolError, match=r"more than 20000 bytes \(pyorbited.max_request\)"
    ):
        parser.feed(data)


def test_a_too_large_request_is_refused_before_it_is_all_received() -> None:
    # The length header announces it: refused before the body arrives.
    parser = OrbitParser(100_000, 20_000)
    with pytest.raises(OrbitProtocolError, match=r"pyorbited\.max_request") as caught:
        parser.feed(b"Orbit 1.0\r\nEvent\r\nid: 4\r\nlength: 19990\r\n")
    assert caught.value.request_id == "4"
    # Headers alone: refused as soon as the bytes held pass the limit, not at the end.
    parser = OrbitParser(100_000, 20_000)
    parser.feed(b"Orbit 1.0\r\nEvent\r\nid: 5\r\n")
    fed = 0
    refused = None
    while refused is None and fed <= 40_000:
        try:
            parser.feed(b"recipient: " + b"b" * 987 + b"\r\n")
        except OrbitProtocolError as exc:
            refused = exc
        else:
            fed += 1000
    assert refused is not None
    assert "pyorbited.max_request" in str(refused)
    assert fed <= 20_000
    # A partial line counts too, however far it is from its CRLF.
    parser = OrbitParser(100_000, 1000)
    with pytest.raises(OrbitProtocolError, match=r"pyorbited\.max_request"):
        parser.feed(b"Orbit 1.0\r\nEvent\r\nrecipient: " + b"c" * 990)


@pytest.mark.parametrize("bad", ["\n", "\r", "\x00", "\t", "\x1b", "\x7f", "\x85"])
def test_a_control_character_in_the_id_is_refused_and_not_echoed(bad: str) -> None:
    data = f"Orbit 1.0\r\nEvent\r\nid: 1{bad}Injected: yes\r\n".encode()
    with pytest.raises(OrbitProtocolError, match=r"the 'id' header contains a control") as caught:
        OrbitParser(1024, 4096).feed(data)
    assert caught.value.request_id is None
    answer = failure(caught.value.request_id, str(caught.value))
    assert b"Injected" not in answer
    assert answer.startswith(b"Failure\r\nid: \r\nmsg: the 'id' header contains a control")
    assert answer.count(b"\r\n") == 4
    assert answer.count(b"\n") == 4


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("recipient: a, 0, /x\nInjected: yes", "the 'recipient' header"),
        ("Length: 1\r", "the 'length' header"),
        ("x-other: \x00", "a line"),
    ],
)
def test_a_control_character_in_any_header_is_refused(line: str, words: str) -> None:
    data = f"Orbit 1.0\r\nEvent\r\nid: 3\r\n{line}\r\n".encode()
    with pytest.raises(OrbitProtocolError, match=f"{words} contains a control") as caught:
        OrbitParser(1024, 4096).feed(data)
    assert caught.value.request_id == "3"  # a checked id may be echoed


def test_unicode_text_in_values_is_not_a_control_character() -> None:
    data = as_pyorbited_sends(["ålice, 0, /chat \u2603"], "hi", request_id=1)
    (request,) = OrbitParser(1024, 4096).feed(data)
    assert request.recipients == ("ålice, 0, /chat \u2603",)
