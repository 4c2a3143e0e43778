"""JSON inside JavaScript and HTML (JSONP, eval bodies, iframe streams), without a network."""

from __future__ import annotations

import re

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orbiter.protocol.scripts import (
    BadCallback,
    check_callback,
    dumps,
    eval_body,
    iframe_call,
    iframe_end,
    iframe_prelude,
    jsonp,
    script_safe,
)

ATTACK = "</script><script>alert(1)</script><!--\u2028\u2029&amp;"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@pytest.mark.parametrize("name", ["cb", "jQuery123_456", "$", "_x", "app.onData", "a.b.c.d"])
def test_plain_callback_names_are_accepted(name: str) -> None:
    assert check_callback(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "1a", "a-b", "alert(1)", "a.", ".a", "a..b", "a.b.c.d.e", "a b", "x" * 65, "a;b", "é"],
)
def test_anything_else_is_refused(name: str) -> None:
    with pytest.raises(BadCallback, match="must be a JavaScript name"):
        check_callback(name)


def test_script_breaking_characters_are_escaped() -> None:
    safe = dumps(ATTACK)
    assert safe == (
        b'"\\u003c/script\\u003e\\u003cscript\\u003ealert(1)\\u003c/script\\u003e'
        b'\\u003c!--\\u2028\\u2029\\u0026amp;"'
    )
    assert orjson.loads(safe) == ATTACK


@given(json_values)
def test_script_safe_json_has_the_same_value_and_nothing_unsafe(value: object) -> None:
    safe = dumps(value)
    assert orjson.loads(safe) == value
    text = safe.decode()
    assert not any(c in text for c in "<>&\u2028\u2029")


def test_script_safe_is_idempotent() -> None:
    once = dumps(ATTACK)
    assert script_safe(once) == once


def test_jsonp_calls_the_callback_behind_a_comment() -> None:
    assert jsonp("app.cb", b'{"a":"<"}') == b'/**/app.cb({"a":"\\u003c"});'
    with pytest.raises(BadCallback):
        jsonp("alert(1);x", b"{}")


def test_eval_body_is_parenthesised_so_objects_evaluate() -> None:
    assert eval_body(b'{"n":1}') == b'({"n":1})'


def test_iframe_stream_parts() -> None:
    prelude = iframe_prelude("Orbited.event_cb")
    assert prelude.startswith(b"<!DOCTYPE html>")
    # Called only when framed: opened on its own, the stream calls nothing.
    assert b"if (window.parent !== window) window.parent.Orbited.event_cb(d);" in prelude
    assert len(prelude) > 2048  # padding for browsers that buffer
    with pytest.raises(BadCallback):
        iframe_prelude("x</script>")

    chunk = iframe_call(orjson.dumps(ATTACK))
    assert chunk.startswith(b"<script>c(")
    assert chunk.endswith(b");</script>\n")
    inner = chunk[len(b"<script>c(") : -len(b");</script>\n")]
    assert orjson.loads(inner) == ATTACK
    # The only tags in the chunk are its own.
    assert re.findall(rb"</?script", chunk) == [b"<script", b"</script"]

    assert iframe_end(1.5) == b"<script>r(1500);</script>\n</body></html>\n"
