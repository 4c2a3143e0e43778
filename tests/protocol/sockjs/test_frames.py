from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orbiter.protocol.sockjs.frames import (
    ANOTHER_CONNECTION,
    HEARTBEAT,
    OPEN,
    Close,
    Messages,
    PayloadError,
    decode_messages,
    decode_websocket,
    encode_frame,
    encode_json,
    largest_message_size,
)


def test_frame_texts() -> None:
    assert encode_frame(OPEN) == "o"
    assert encode_frame(HEARTBEAT) == "h"
    assert encode_frame(Messages(("a", 'b"'))) == 'a["a","b\\""]'
    assert encode_frame(Close(3000, "Go away!")) == 'c[3000,"Go away!"]'
    assert encode_frame(ANOTHER_CONNECTION) == 'c[2010,"Another connection still open"]'


@pytest.mark.parametrize(
    "char", ["\u200c", "\u200f", "\u2028", "\u202f", "\u2060", "\u206f", "\ufff0", "\uffff"]
)
def test_code_points_browsers_mangle_are_escaped(char: str) -> None:
    assert encode_json(char) == f'"\\u{ord(char):04x}"'


def test_control_characters_are_escaped_and_the_rest_is_utf8() -> None:
    assert encode_json("  \x00\n\r ") == '"  \\u0000\\n\\r "'
    assert encode_json("zażółć 日本 🎉") == '"zażółć 日本 🎉"'
    assert encode_json("\u200b\u2030") == '"\u200b\u2030"'


@given(st.lists(st.text()))
def test_encoded_messages_decode_back(messages: list[str]) -> None:
    text = encode_frame(Messages(tuple(messages)))
    assert json.loads(text[1:]) == messages
    assert decode_messages(text[1:].encode()) == messages


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", "Payload expected."),
        (b'["x', "Broken JSON encoding."),
        (b"\xff\xfe", "Broken JSON encoding."),
        (b'["\\ud800"]', "Broken JSON encoding."),
        (b'"x"', "Payload expected."),
        (b"[1]", "Payload expected."),
        (b"null", "Payload expected."),
    ],
)
def test_bad_bodies(body: bytes, error: str) -> None:
    with pytest.raises(PayloadError, match=error.replace(".", r"\.")):
        decode_messages(body)


def test_client_escapes_are_undone() -> None:
    assert decode_messages(b'["\\u00ad\\u2028\\ufeff\\ud83c\\udf89"]') == ["\u00ad\u2028\ufeff🎉"]
    assert decode_messages(b"[]") == []


def test_websocket_frames_hold_an_array_or_one_string() -> None:
    assert decode_websocket("") == []
    assert decode_websocket("[]") == []
    assert decode_websocket('["a","b"]') == ["a", "b"]
    assert decode_websocket('"a"') == ["a"]
    with pytest.raises(PayloadError):
        decode_websocket('["a')
    with pytest.raises(PayloadError):
        decode_websocket("{}")


def test_largest_message_size_counts_utf8_bytes() -> None:
    assert largest_message_size([]) == 0
    assert largest_message_size(["ab", "ż"]) == 2
    assert largest_message_size(["🎉"]) == 4
