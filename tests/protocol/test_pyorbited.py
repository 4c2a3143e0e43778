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
    assert OrbitParser(1024).feed(data) == [
        EventRequest("Orbit 1.0", "1", ("alice, 0, /chat", "bob, 0, /chat"), b'"<b>hi</b>"')
    ]


def test_split_at_every_byte_and_pipelined() -> None:
    data = as_pyorbited_sends(["a, 0, /x"], {"n": 1}, 1) + as_pyorbited_sends(["b, 0, /y"], [2], 2)
    for cut in range(len(data) + 1):
        parser = OrbitParser(1024)
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
        (b"Orbit 1.0\r\nEvent\r\nid: 1\r\nlength: 2000\r\n", "more than the limit"),
        (b"Orbit 1.0\r\n" + b"x" * 9000, "longer than"),
        (b"Orbit 1.0\r\nEvent\r\nid: \xff\r\n", "not UTF-8"),
    ],
)
def test_errors(data: bytes, words: str) -> None:
    with pytest.raises(OrbitProtocolError, match=words):
        OrbitParser(1024).feed(data)


def test_answers_as_the_03_daemon_wrote_them() -> None:
    assert success("7") == b"Success\r\nid: 7\r\n\r\n"
    assert failure("7", "Failed to reach one or more recipients", ("alice, 0, /chat",)) == (
        b"Failure\r\nid: 7\r\nmsg: Failed to reach one or more recipients\r\n"
        b"recipient: (alice, 0, /chat)\r\n\r\n"
    )


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_fail_cleanly(data: bytes) -> None:
    parser = OrbitParser(64)
    try:
        for i in range(0, len(data), 7):
            parser.feed(data[i : i + 7])
    except OrbitProtocolError:
        pass


# ², Arabic-Indic 10, more digits than int() takes
@pytest.mark.parametrize("digits", ["\u00b2", "\u0661\u0660", "9" * 5000])
def test_length_is_ascii_digits_only(digits: str) -> None:
    data = f"Orbit 1.0\r\nEvent\r\nid: 1\r\nlength: {digits}\r\n".encode()
    with pytest.raises(OrbitProtocolError, match=r"not a number|more than the limit"):
        OrbitParser(1024).feed(data)
