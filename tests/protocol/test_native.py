from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orbiter.model import Publication, StreamPosition
from orbiter.protocol.native import (
    Command,
    CommandError,
    Connect,
    ErrorCode,
    Ping,
    Publish,
    ServerProtocol,
    State,
    Subscribe,
    Unsubscribe,
    encode_error,
    encode_publication,
    encode_published,
    encode_reply,
    is_reserved_tag,
    reserved_refusal,
    validate_tags,
)


def connected() -> ServerProtocol:
    proto = ServerProtocol()
    [event] = proto.receive('{"id": 1, "op": "connect"}')
    assert isinstance(event, Connect)
    return proto


def test_connect_with_identity() -> None:
    proto = ServerProtocol()
    [event] = proto.receive(
        b'{"id": 1, "op": "connect", "user": "ann", "session": 0, "location": "/chat",'
        b' "since": {"offset": 4, "epoch": "e1"}}'
    )
    assert event == Connect(1, "ann", "0", "/chat", None, StreamPosition(4, "e1"))
    assert proto.state is State.CONNECTED


def test_commands_before_connect_are_refused_but_ping_is_answered() -> None:
    proto = ServerProtocol()
    sub, ping = proto.receive('{"id":1,"op":"subscribe","channel":"a"}\n{"id":2,"op":"ping"}')
    assert isinstance(sub, CommandError)
    assert sub.code is ErrorCode.NOT_CONNECTED
    assert sub.id == 1
    assert ping == Ping(2)


def test_second_connect_is_refused() -> None:
    proto = connected()
    [event] = proto.receive('{"id": 2, "op": "connect"}')
    assert isinstance(event, CommandError)
    assert event.code is ErrorCode.ALREADY_CONNECTED


def test_batch_with_connect_first_is_accepted_in_order() -> None:
    proto = ServerProtocol()
    events = proto.receive(
        '{"id":1,"op":"connect"}\n\n{"id":2,"op":"subscribe","channel":"c",'
        '"since":{"offset":0,"epoch":"x"}}\n{"id":3,"op":"publish","channel":"c","data":[1]}\n'
        '{"id":4,"op":"unsubscribe","channel":"c"}\r\n'
    )
    assert events[1:] == [
        Subscribe(2, "c", StreamPosition(0, "x")),
        Publish(3, "c", [1]),
        Unsubscribe(4, "c"),
    ]


@pytest.mark.parametrize(
    ("line", "code", "problem", "has_id"),
    [
        ("{nope", ErrorCode.BAD_REQUEST, "malformed JSON", False),
        ("[1, 2]", ErrorCode.BAD_REQUEST, "JSON object", False),
        ('{"op": "ping"}', ErrorCode.BAD_REQUEST, "'id'", False),
        ('{"id": "7", "op": "ping"}', ErrorCode.BAD_REQUEST, "'id'", False),
        ('{"id": -1, "op": "ping"}', ErrorCode.BAD_REQUEST, "'id'", False),
        ('{"id": true, "op": "ping"}', ErrorCode.BAD_REQUEST, "'id'", False),
        ('{"id": 5, "op": "dance"}', ErrorCode.METHOD_NOT_FOUND, "unknown op 'dance'", True),
        ('{"id": 5}', ErrorCode.BAD_REQUEST, "'op' must be a string", True),
        ('{"id": 5, "op": "subscribe"}', ErrorCode.BAD_REQUEST, "'channel'", True),
        ('{"id": 5, "op": "subscribe", "channel": ""}', ErrorCode.BAD_REQUEST, "'channel'", True),
        ('{"id": 5, "op": "subscribe", "channel": 3}', ErrorCode.BAD_REQUEST, "'channel'", True),
        (
            '{"id": 5, "op": "subscribe", "channel": "a\\u0001"}',
            ErrorCode.BAD_REQUEST,
            "control",
            True,
        ),
        (
            '{"id": 5, "op": "subscribe", "channel": "' + "x" * 300 + '"}',
            ErrorCode.BAD_REQUEST,
            "longer",
            True,
        ),
        (
            '{"id": 5, "op": "subscribe", "channel": "a", "since": 3}',
            ErrorCode.BAD_REQUEST,
            "'since'",
            True,
        ),
        (
            '{"id": 5, "op": "subscribe", "channel": "a", "since": {"offset": -1, "epoch": "e"}}',
            ErrorCode.BAD_REQUEST,
            "since.offset",
            True,
        ),
        (
            '{"id": 5, "op": "subscribe", "channel": "a", "since": {"offset": 1}}',
            ErrorCode.BAD_REQUEST,
            "since.epoch",
            True,
        ),
        ('{"id": 5, "op": "publish", "channel": "a"}', ErrorCode.BAD_REQUEST, "'data'", True),
    ],
)
def test_bad_commands_get_an_error_naming_the_problem(
    line: str, code: ErrorCode, problem: str, has_id: bool
) -> None:
    [event] = connected().receive(line)
    assert isinstance(event, CommandError)
    assert event.code is code
    assert problem in event.message
    assert (event.id == 5) if has_id else event.id is None


def test_bad_connect_fields() -> None:
    [event] = ServerProtocol().receive('{"id": 1, "op": "connect", "user": 5}')
    assert isinstance(event, CommandError)
    assert "'user' must be a string" in event.message
    assert ServerProtocol().receive('{"id": 1, "op": "connect", "user": 5}')


def test_empty_message_is_an_error() -> None:
    [event] = connected().receive(" \n ")
    assert isinstance(event, CommandError)
    assert event.message == "empty message"


def test_encoders_produce_one_json_line() -> None:
    pub = Publication("c", 3, "e", {"text": "multi\nline"}, 1.0)
    for raw in (
        encode_publication(pub),
        encode_reply(1, {"a": "x\ny"}),
        encode_error(None, ErrorCode.BAD_REQUEST, "bad\nthing"),
    ):
        assert b"\n" not in raw
        orjson.loads(raw)
    assert orjson.loads(encode_publication(pub)) == {
        "push": "pub",
        "channel": "c",
        "offset": 3,
        "data": {"text": "multi\nline"},
    }
    assert orjson.loads(encode_error(7, ErrorCode.PERMISSION_DENIED, "no")) == {
        "id": 7,
        "error": {"code": 103, "message": "no"},
    }


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    proto = connected()
    events = proto.receive(data)
    assert events
    for event in events:
        assert isinstance(event, CommandError | Command)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(
    st.dictionaries(
        st.sampled_from(["id", "op", "channel", "data", "since", "user"]),
        _json | st.sampled_from(["subscribe", "publish", "ping", "connect"]),
        max_size=6,
    )
)
def test_arbitrary_objects_never_raise(obj: dict[str, object]) -> None:
    # stdlib json, which (unlike orjson) also writes integers beyond 64 bits
    [event] = connected().receive(json.dumps(obj))
    assert isinstance(event, CommandError | Command)


@pytest.mark.parametrize(
    "name", ["Content-Length", "DESTINATION", "Message-Id", "Orbiter-Offset", "ORBITER-x", "Ack"]
)
def test_reserved_tag_names_are_matched_in_any_letter_case(name: str) -> None:
    assert is_reserved_tag(name)
    with pytest.raises(ValueError, match="is reserved"):
        validate_tags({name: "x"})


def test_tag_names_that_only_resemble_reserved_ones_pass() -> None:
    tags = {"content-lengths": "1", "x-destination": "2", "orbiter": "3", "kind": "4"}
    assert not any(is_reserved_tag(name) for name in tags)
    assert validate_tags(tags) == tags


def test_channels_of_the_server_are_refused_by_name_with_one_message() -> None:
    assert (
        reserved_refusal("$key:ann, 0, /x")
        == "channel '$key:ann, 0, /x' is reserved for the server"
    )
    assert reserved_refusal("$anything") is not None
    assert reserved_refusal("chat:$lobby") is None


@pytest.mark.parametrize(
    ("id_", "offset", "epoch"),
    [(1, 0, "a1b2c3d4"), (2**53, 10**12, "a1b2c3d4-7"), (5, 3, 'q"\\\n\u00e9\U0001f600')],
)
def test_the_publish_reply_is_encode_replys_bytes(id_: int, offset: int, epoch: str) -> None:
    """The written-out reply to a publish is exactly the generic reply (escaping included)."""
    expected = encode_reply(id_, {"offset": offset, "epoch": epoch})
    assert encode_published(id_, offset, epoch) == expected
