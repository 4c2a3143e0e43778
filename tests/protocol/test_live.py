"""The live-element ops of the native protocol, without I/O: parsing, encoding, call ids."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orbiter.protocol.live import (
    MAX_ERROR_MESSAGE,
    Attach,
    BadLiveMessage,
    Call,
    CallIds,
    NotJSON,
    Return,
    TooManyCalls,
    encode_call_error,
    encode_call_push,
    encode_call_result,
    parse_return,
)
from orbiter.protocol.native import CommandError, ErrorCode, ServerProtocol


def connected() -> ServerProtocol:
    protocol = ServerProtocol()
    protocol.receive(b'{"id": 1, "op": "connect"}')
    return protocol


def test_attach_call_and_return_parse() -> None:
    events = connected().receive(
        b'{"id": 2, "op": "attach", "mount": "/chat"}\n'
        b'{"id": 3, "op": "call", "element": 1, "method": "say", "args": ["hi", {"a": 1}]}\n'
        b'{"id": 4, "op": "call", "element": 1, "method": "ping"}\n'
        b'{"op": "return", "call": 7, "value": [1]}\n'
        b'{"op": "return", "call": 8, "error": {"type": "TypeError", "message": "no"}}'
    )
    assert events == [
        Attach(2, "/chat"),
        Call(3, 1, "say", ("hi", {"a": 1})),
        Call(4, 1, "ping", ()),
        Return(7, [1]),
        Return(8, error=("TypeError", "no")),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"id": 2, "op": "attach"}', "'attach' needs 'mount'"),
        (b'{"id": 2, "op": "attach", "mount": "chat"}', "'attach' needs 'mount'"),
        (b'{"id": 2, "op": "call", "method": "x"}', "'element' must be a positive integer"),
        (b'{"id": 2, "op": "call", "element": 0, "method": "x"}', "'element' must be"),
        (b'{"id": 2, "op": "call", "element": true, "method": "x"}', "'element' must be"),
        (b'{"id": 2, "op": "call", "element": 1, "method": ""}', "'call' needs 'method'"),
        (b'{"id": 2, "op": "call", "element": 1, "method": "x", "args": 1}', "must be an array"),
    ],
)
def test_malformed_ops_are_bad_requests_naming_the_field(line: bytes, message: str) -> None:
    [event] = connected().receive(line)
    assert isinstance(event, CommandError)
    assert (event.id, event.code) == (2, ErrorCode.BAD_REQUEST)
    assert message in event.message


def test_a_method_name_longer_than_128_is_refused() -> None:
    line = orjson.dumps({"id": 2, "op": "call", "element": 1, "method": "m" * 129})
    [event] = connected().receive(line)
    assert isinstance(event, CommandError)


def test_live_ops_need_connect_first() -> None:
    protocol = ServerProtocol()
    events = protocol.receive(
        b'{"id": 1, "op": "call", "element": 1, "method": "x"}\n{"op": "return", "call": 1}'
    )
    assert [(e.id, e.code) for e in events if isinstance(e, CommandError)] == [
        (1, ErrorCode.NOT_CONNECTED),
        (None, ErrorCode.NOT_CONNECTED),
    ]


def test_a_return_error_is_cut_to_its_bounds() -> None:
    answer = parse_return({"call": 1, "error": {"type": "", "message": "x" * 10_000}})
    assert answer.error == ("Error", "x" * MAX_ERROR_MESSAGE)


@given(st.dictionaries(st.text(max_size=8), st.none() | st.integers() | st.text(max_size=8)))
def test_any_return_object_parses_or_names_the_problem(obj: dict[str, Any]) -> None:
    try:
        answer = parse_return(obj)
    except BadLiveMessage as exc:
        message = str(exc)
        assert message.startswith("'"), message
    else:
        assert isinstance(answer.call, int)


def test_encodings() -> None:
    assert orjson.loads(encode_call_push(3, 1, "hear", ("ann", "hi"))) == {
        "push": "call",
        "call": 3,
        "element": 1,
        "method": "hear",
        "args": ["ann", "hi"],
    }
    assert orjson.loads(encode_call_result(5, "say", None)) == {"id": 5, "result": {"value": None}}
    assert orjson.loads(encode_call_error(5, 113, "ValueError", "bad")) == {
        "id": 5,
        "error": {"code": 113, "message": "bad", "type": "ValueError"},
    }
    with pytest.raises(NotJSON, match=r"the result of say\(\) cannot be sent as JSON"):
        encode_call_result(5, "say", object())
    with pytest.raises(NotJSON, match=r"the arguments of hear\(\)"):
        encode_call_push(1, 1, "hear", ("ok", {1}))


def test_call_ids_count_the_outstanding() -> None:
    ids = CallIds(2)
    a, b = ids.start(), ids.start()
    assert (a, b) == (1, 2)
    with pytest.raises(TooManyCalls, match=r"live\.max_calls"):
        ids.start()
    assert [ids.finish(a), ids.finish(a), ids.finish(99)] == [True, False, False]
    assert ids.start() == 3
    assert ids.outstanding == 2
