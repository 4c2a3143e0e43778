"""The hixie-76 draft's handshake and framing, without a network."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orbiter.protocol import hixie76
from orbiter.protocol.hixie76 import CloseRequest, FrameDecoder, FrameError, HandshakeError, Text

HEAD = (
    b"GET /sockjs/000/abc/websocket HTTP/1.1\r\n"
    b"Host: example.com:8000\r\n"
    b"Upgrade: WebSocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Origin: http://example.com\r\n"
    b"Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\n"
    b"sec-websocket-key2: 12998 5 Y3 1  .P00\r\n"
    b"\r\n"
)


def test_the_drafts_own_example_challenge() -> None:
    # draft-hixie-thewebsocketprotocol-76, section 1.3.
    response = hixie76.challenge_response(
        "18x 6]8vM;54 *(5:  {   U1]8  z [  8", "1_ tx7X d  <  nw  334J702) 7]o}` 0", b"Tm[K T2u"
    )
    assert response == b"fQJ,fN/4F4!~K~MH"


def test_the_sockjs_suites_challenge() -> None:
    response = hixie76.challenge_response("4 @1  46546xW%0l 1 5", "12998 5 Y3 1  .P00", b"aaaaaaaa")
    assert response == b"\xca4\x00\xd8\xa5\x08G\x97,\xd5qZ\xba\xbfC{"


def test_a_head_is_recognised_parsed_and_answered() -> None:
    assert hixie76.head_length(HEAD + b"aaaaaaaa") == len(HEAD)
    assert hixie76.head_length(HEAD[:-2]) is None
    assert hixie76.is_hixie76(HEAD)
    assert not hixie76.is_hixie76(HEAD.replace(b"Key1", b"Key"))
    request = hixie76.parse_head(HEAD)
    hixie76.validate(request)
    assert request.method == "GET"
    assert request.target == "/sockjs/000/abc/websocket"
    assert request.headers["sec-websocket-key2"] == "12998 5 Y3 1  .P00"
    response = hixie76.response_head(request)
    assert response.startswith(b"HTTP/1.1 101 ")
    assert b"\r\nSec-WebSocket-Origin: http://example.com\r\n" in response
    assert b"\r\nSec-WebSocket-Location: ws://example.com:8000/sockjs/000/abc/websocket\r\n" in (
        response
    )
    assert b"Content-Length" not in response
    assert response.endswith(b"\r\n\r\n")
    assert b"wss://" in hixie76.response_head(request, secure=True)


def test_repeated_headers_keep_the_first() -> None:
    request = hixie76.parse_head(HEAD.replace(b"\r\n\r\n", b"\r\nOrigin: http://evil\r\n\r\n"))
    assert request.headers["origin"] == "http://example.com"


@pytest.mark.parametrize(
    ("head", "problem"),
    [
        (HEAD.replace(b"GET ", b"POST "), "GET"),
        (HEAD.replace(b"Upgrade: WebSocket", b"Upgrade: h2c"), "Upgrade"),
        (HEAD.replace(b"Connection: Upgrade", b"Connection: close"), "Connection"),
        (HEAD.replace(b"sec-websocket-key2", b"x-key2"), "sec-websocket-key2"),
        (HEAD.replace(b"4 @1  46546xW%0l 1 5", b"nodigits here"), "digits"),
        (HEAD.replace(b"4 @1  46546xW%0l 1 5", b"123456"), "spaces"),
        (HEAD.replace(b"4 @1  46546xW%0l 1 5", b"1 2 5"), "multiple"),
        (HEAD.replace(b"4 @1  46546xW%0l 1 5", b"99999999999 1"), "32-bit"),
    ],
)
def test_invalid_handshakes_name_the_problem(head: bytes, problem: str) -> None:
    with pytest.raises(HandshakeError, match=problem):
        hixie76.validate(hixie76.parse_head(head))


@pytest.mark.parametrize(
    "head", [b"GET / HTTP/2\r\n\r\n", b"garbage\r\n\r\n", b"GET / HTTP/1.1\r\nno colon\r\n\r\n"]
)
def test_malformed_heads_are_refused(head: bytes) -> None:
    with pytest.raises(HandshakeError):
        hixie76.parse_head(head)


def test_key3_must_be_eight_bytes() -> None:
    with pytest.raises(HandshakeError, match="8 bytes"):
        hixie76.challenge_response("1 ", "1 ", b"short")


STREAM = (
    hixie76.encode_text('["a"]')
    + hixie76.encode_text("zażółć 🎉")
    + b"\x80\x03abc"  # a binary frame: skipped
    + b"\x80\x81\x01"  # a binary frame of 129 bytes (base-128 length) ...
    + b"y" * 129  # ... skipped
    + hixie76.encode_text("")
    + hixie76.CLOSE_FRAME
)
EVENTS = [Text('["a"]'), Text("zażółć 🎉"), Text(""), CloseRequest()]


def test_frames_split_at_every_byte_parse_the_same() -> None:
    for cut in range(len(STREAM) + 1):
        decoder = FrameDecoder(max_frame=1000)
        assert decoder.feed(STREAM[:cut]) + decoder.feed(STREAM[cut:]) == EVENTS, cut
    decoder = FrameDecoder(max_frame=1000)
    assert [e for i in range(len(STREAM)) for e in decoder.feed(STREAM[i : i + 1])] == EVENTS


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x01abc\xff", "unknown frame type"),
        (b"\x00\xc3\x28\xff", "UTF-8"),
        (b"\x00" + b"x" * 11, "over the limit"),
        (b"\x80\x0c" + b"x" * 12, "over the limit"),
        (b"\x80\xff\xff\xff\xff\xff", "too long"),
    ],
)
def test_bad_frames_are_errors(data: bytes, problem: str) -> None:
    with pytest.raises(FrameError, match=problem):
        FrameDecoder(max_frame=10).feed(data)


@given(st.lists(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=50)))
def test_encoded_texts_decode_back(texts: list[str]) -> None:
    decoder = FrameDecoder(max_frame=1000)
    assert decoder.feed(b"".join(map(hixie76.encode_text, texts))) == [Text(t) for t in texts]


@given(st.binary(max_size=200))
def test_no_input_raises_anything_but_a_frame_error(data: bytes) -> None:
    with contextlib.suppress(FrameError):
        FrameDecoder(max_frame=64).feed(data)
