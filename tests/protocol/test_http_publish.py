"""The strict POST /api/publish parser: what it takes, what it hands to aiohttp, at every split."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orbiter.protocol.http_publish import (
    INCOMPLETE,
    MAX_HEAD,
    MAX_HEADERS,
    MEMO_SIZE,
    Handover,
    PublishHead,
    PublishParser,
    parse_publish,
)

LIMIT = 1000
BODY = b'{"channel":"c","data":1}'


def request(
    *headers: bytes, body: bytes = BODY, line: bytes = b"POST /api/publish HTTP/1.1"
) -> bytes:
    fields = (
        [b"Host: x", *headers]
        if not any(h.lower().startswith(b"host:") for h in headers)
        else list(headers)
    )
    if not any(h.lower().startswith(b"content-length") for h in fields):
        fields.append(b"Content-Length: %d" % len(body))
    return line + b"\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body


def taken(data: bytes, start: int = 0) -> tuple[PublishHead, bytes, int]:
    parsed = parse_publish(data, start, LIMIT)
    assert isinstance(parsed, tuple), parsed
    return parsed


def test_one_request_and_its_fields() -> None:
    data = request(
        b"X-API-Key:  k1 ",
        b"Authorization: apikey k2",
        b"X-Forwarded-For: 10.0.0.1",
        b"x-forwarded-for: 10.0.0.2, 10.0.0.3",
        b"Content-Type: application/json",
        b"Connection: keep-alive",
    )
    head, body, end = taken(data)
    assert end == len(data)
    assert body == BODY
    assert head.length == len(BODY)
    assert head.x_api_key == "k1"
    assert head.authorization == "apikey k2"
    assert head.forwarded_for == ("10.0.0.1", "10.0.0.2, 10.0.0.3")
    assert head.close is False
    assert head.host == "x"
    assert head.content_type == "application/json"
    assert taken(request(b"Host:  a.example:80 "))[0].host == "a.example:80"
    assert taken(request())[0].content_type is None


def test_pipelined_requests_follow_each_other() -> None:
    bodies = [b'{"channel":"c","data":%d}' % i for i in range(3)]
    data = b"".join(request(body=b) for b in bodies)
    pos, seen = 0, []
    while pos < len(data):
        _, body, pos = taken(data, pos)
        seen.append(body)
    assert seen == bodies


@pytest.mark.parametrize(
    "value", [b"close", b"Close", b"keep-alive, close", b"close ,keep-alive", b"CLOSE"]
)
def test_connection_close_is_noticed(value: bytes) -> None:
    head, _, _ = taken(request(b"Connection: " + value))
    assert head.close is True


def test_every_prefix_is_incomplete() -> None:
    data = request(b"X-API-Key: k")
    for cut in range(len(data)):
        assert parse_publish(data[:cut], 0, LIMIT) is INCOMPLETE, cut
    assert isinstance(parse_publish(data, 0, LIMIT), tuple)


def test_an_empty_body_is_taken_for_the_api_to_refuse() -> None:
    _, body, _ = taken(request(body=b""))
    assert body == b""


def test_a_body_at_the_limit_is_taken_one_over_is_not() -> None:
    assert taken(request(body=b"x" * LIMIT))[1] == b"x" * LIMIT
    assert isinstance(parse_publish(request(body=b"x" * (LIMIT + 1)), 0, LIMIT), Handover)
    # Judged from the head alone: the body is not waited for.
    head = request(body=b"x" * (LIMIT + 1))[: -(LIMIT + 1)]
    assert isinstance(parse_publish(head, 0, LIMIT), Handover)


HANDED_OVER = {
    "HTTP/1.0": request(line=b"POST /api/publish HTTP/1.0"),
    "GET": request(line=b"GET /api/publish HTTP/1.1"),
    "query": request(line=b"POST /api/publish?x=1 HTTP/1.1"),
    "other path": request(line=b"POST /api/event HTTP/1.1"),
    "lower-case method": request(line=b"post /api/publish HTTP/1.1"),
    "double space": request(line=b"POST  /api/publish HTTP/1.1"),
    "leading CRLF": b"\r\n" + request(),
    "chunked": request(b"Transfer-Encoding: chunked", b"Content-Length: 5"),
    "chunked only": (
        b"POST /api/publish HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
    ),
    "expect": request(b"Expect: 100-continue"),
    "upgrade": request(b"Upgrade: websocket"),
    "content-encoding": request(b"Content-Encoding: gzip"),
    "hixie-76 key": request(b"Sec-WebSocket-Key1: 1 2"),
    "two content-lengths": request(b"Content-Length: 24", b"Content-Length: 24"),
    "plus sign": request(b"Content-Length: +24"),
    "hex": request(b"Content-Length: 0x18"),
    "two numbers": request(b"Content-Length: 24 24"),
    "comma list": request(b"Content-Length: 24, 24"),
    "huge": request(b"Content-Length: 1" + b"0" * 30),
    "unicode digits": request("Content-Length: ²4".encode()),
    "no content-length": b"POST /api/publish HTTP/1.1\r\nHost: x\r\n\r\n",
    "no host": b"POST /api/publish HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
    "two hosts": request(b"Host: a", b"Host: b"),
    "two user-agents": request(b"User-Agent: a", b"User-Agent: b"),
    "two content-types": request(b"Content-Type: a", b"Content-Type: b"),
    "two api keys": request(b"X-API-Key: a", b"X-API-Key: b"),
    "two authorizations": request(b"Authorization: a", b"Authorization: b"),
    "two connections": request(b"Connection: close", b"Connection: close"),
    "connection upgrade": request(b"Connection: upgrade"),
    "connection other": request(b"Connection: close, te"),
    "obs-fold": request(b"X-API-Key: a", b" b"),
    "tab fold": request(b"X-API-Key: a", b"\tb"),
    "space before colon": request(b"X-API-Key : a"),
    "no colon": request(b"X-API-Key a"),
    "empty name": request(b": a"),
    "bare LF in a value": request(b"X-API-Key: a\nb"),
    "bare CR in a value": request(b"X-API-Key: a\rb"),
    "LF line end": request(b"X-API-Key: a\nX-Other: b"),
    "NUL": request(b"X-API-Key: a\x00b"),
    "DEL": request(b"X-API-Key: a\x7fb"),
    "control": request(b"X-API-Key: a\x01b"),
    "non-ASCII value": request("X-Name: é".encode()),
    "non-ASCII name": request("X-Nämé: e".encode()),
    "too many headers": request(*[b"X-H%d: v" % i for i in range(MAX_HEADERS)]),
    "head too long": request(b"X-Pad: " + b"p" * MAX_HEAD),
}


@pytest.mark.parametrize("data", list(HANDED_OVER.values()), ids=list(HANDED_OVER))
def test_what_is_not_fully_understood_is_handed_over(data: bytes) -> None:
    assert isinstance(parse_publish(data, 0, LIMIT), Handover)
    # Also when it follows a request that was taken: from its own first byte.
    first = request()
    _, _, end = taken(first + data)
    assert end == len(first)
    assert isinstance(parse_publish(first + data, end, LIMIT), Handover)


def test_an_unfinished_head_too_long_is_handed_over_without_waiting() -> None:
    data = b"POST /api/publish HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * MAX_HEAD
    assert isinstance(parse_publish(data, 0, LIMIT), Handover)


def test_an_unfinished_head_of_another_request_is_handed_over_at_once() -> None:
    assert isinstance(parse_publish(b"GET ", 0, LIMIT), Handover)
    assert isinstance(parse_publish(b"POST /api/publish HTTP/1.0", 0, LIMIT), Handover)
    assert parse_publish(b"POST /api/pub", 0, LIMIT) is INCOMPLETE


def test_headers_up_to_the_limit_are_taken() -> None:
    data = request(*[b"X-H%d: v" % i for i in range(MAX_HEADERS - 2)])
    assert taken(data)[2] == len(data)


@given(st.binary(max_size=400), st.integers(min_value=0, max_value=50))
def test_any_bytes_are_judged_without_error(data: bytes, start: int) -> None:
    parsed = parse_publish(data, min(start, len(data)), LIMIT)
    if isinstance(parsed, tuple):
        head, body, end = parsed
        assert end <= len(data)
        assert len(body) == head.length
        assert data[end - len(body) : end] == body


@given(
    st.lists(
        st.tuples(
            st.sampled_from([b"X-API-Key", b"User-Agent", b"Accept", b"Authorization", b"X-A"]),
            st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20),
        ),
        max_size=5,
        unique_by=lambda h: h[0],
    ),
    st.binary(max_size=60),
)
def test_generated_requests_are_taken_whole(headers: list[tuple[bytes, str]], body: bytes) -> None:
    data = request(*[name + b": " + value.encode() for name, value in headers], body=body)
    head, got, end = taken(data + b"POST")
    assert end == len(data)
    assert got == body
    keys = dict(headers)
    assert head.x_api_key == keys.get(b"X-API-Key")
    assert head.authorization == keys.get(b"Authorization")


def test_a_remembered_head_gives_the_same_verdict() -> None:
    parser = PublishParser(LIMIT)
    good, bad = request(b"X-API-Key: a"), request(b"Expect: 100-continue")
    data = (good + bad) * 3
    first = parser.parse(data, 0)
    assert isinstance(first, tuple)
    for _ in range(3):
        again = parser.parse(data, 0)
        assert isinstance(again, tuple)
        assert again[0] is first[0]
        assert again[1:] == first[1:]
        assert isinstance(parser.parse(data, len(good)), Handover)


def test_the_memory_is_bounded() -> None:
    parser = PublishParser(LIMIT)
    for i in range(MEMO_SIZE * 3):
        data = request(b"X-N: %d" % i)
        assert isinstance(parser.parse(data, 0), tuple)
    assert len(parser._heads) <= MEMO_SIZE


def test_an_incomplete_request_says_how_much_it_wants() -> None:
    parser = PublishParser(LIMIT)
    data = request(body=b"x" * 500)
    assert parser.parse(data[:10], 0) is INCOMPLETE
    assert parser.wanted == 0  # the head is not whole: any byte may finish it
    assert parser.parse(b"junk" + data[:-100], 4) is INCOMPLETE
    assert parser.wanted == len(data)


_HEADS = st.sampled_from(
    [(), (b"X-API-Key: a",), (b"X-API-Key: a", b"X-A: 1"), (b"Expect: 100-continue",)]
)


@given(st.lists(st.tuples(_HEADS, st.binary(max_size=12)), min_size=1, max_size=8))
def test_a_parser_that_remembers_judges_each_request_as_a_fresh_one(
    requests: list[tuple[tuple[bytes, ...], bytes]],
) -> None:
    """The remembered heads (the last one, compared byte for byte) change no verdict:
    bodies of other lengths change ``Content-Length``, other headers the head."""
    parser = PublishParser(LIMIT)
    data = b"".join(request(*headers, body=body) for headers, body in requests)
    pos = 0
    for _ in requests:
        remembered, fresh = parser.parse(data, pos), parse_publish(data, pos, LIMIT)
        if not isinstance(fresh, tuple):
            assert isinstance(remembered, Handover)
            assert isinstance(fresh, Handover)
            break
        assert isinstance(remembered, tuple)
        head, body, end = remembered
        assert (body, end) == fresh[1:]
        assert (head.length, head.x_api_key) == (fresh[0].length, fresh[0].x_api_key)
        pos = end


def test_a_head_not_admitted_is_handed_over_every_time() -> None:
    """The server's ``admit`` check runs on each distinct head, its verdict remembered."""
    seen: list[str] = []

    def admit(head: PublishHead) -> bool:
        seen.append(head.host)
        return head.host == "ok"

    parser = PublishParser(LIMIT, admit)
    good, bad = request(b"Host: ok"), request(b"Host: no")
    assert isinstance(parser.parse(good + good, 0), tuple)
    assert isinstance(parser.parse(good + good, len(good)), tuple)
    for _ in range(3):
        parsed = parser.parse(good + bad, len(good))
        assert isinstance(parsed, Handover)
        assert "not admitted" in parsed.reason
    assert isinstance(parser.parse(bad + good, 0), Handover)
    assert seen == ["ok", "no"]  # each head judged once
