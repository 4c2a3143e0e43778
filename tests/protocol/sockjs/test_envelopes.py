from __future__ import annotations

import json

import pytest

from orbiter.protocol.sockjs.envelopes import CALLBACK, ENVELOPES
from orbiter.protocol.sockjs.frames import OPEN, Close, Messages


def test_the_five_envelopes() -> None:
    assert {
        name: (e.method, e.content_type, e.streaming, e.needs_callback)
        for name, e in ENVELOPES.items()
    } == {
        "xhr": ("POST", "application/javascript; charset=UTF-8", False, False),
        "xhr_streaming": ("POST", "application/javascript; charset=UTF-8", True, False),
        "eventsource": ("GET", "text/event-stream", True, False),
        "htmlfile": ("GET", "text/html; charset=UTF-8", True, True),
        "jsonp": ("GET", "application/javascript; charset=UTF-8", False, True),
    }


def test_xhr_frames_end_with_a_newline() -> None:
    assert ENVELOPES["xhr"].prelude("") == b""
    assert ENVELOPES["xhr"].wrap(OPEN, "") == b"o\n"
    assert ENVELOPES["xhr_streaming"].prelude("") == b"h" * 2048 + b"\n"
    assert ENVELOPES["xhr_streaming"].wrap(Messages(("x",)), "") == b'a["x"]\n'


def test_eventsource_events() -> None:
    assert ENVELOPES["eventsource"].prelude("") == b"\r\n"
    assert ENVELOPES["eventsource"].wrap(Close(3000, "Go away!"), "") == (
        b'data: c[3000,"Go away!"]\r\n\r\n'
    )


def test_htmlfile_page_and_scripts() -> None:
    envelope = ENVELOPES["htmlfile"]
    prelude = envelope.prelude("_jp.abc")
    assert b"var c = parent._jp.abc;" in prelude
    assert len(prelude) > 1024
    assert prelude.endswith(b"\r\n\r\n")
    assert envelope.wrap(Messages(("x",)), "cb") == b'<script>\np("a[\\"x\\"]");\n</script>\r\n'
    tricky = envelope.wrap(Messages(("</script>&",)), "cb")
    assert b"</script>&" not in tricky
    inner = tricky.removeprefix(b"<script>\np(").removesuffix(b");\n</script>\r\n")
    assert json.loads(json.loads(inner)[1:]) == ["</script>&"]


def test_jsonp_calls_the_callback() -> None:
    assert ENVELOPES["jsonp"].wrap(OPEN, "cb") == b'/**/cb("o");\r\n'
    assert ENVELOPES["jsonp"].wrap(Messages(("x",)), "a.b") == b'/**/a.b("a[\\"x\\"]");\r\n'


@pytest.mark.parametrize("name", ["callback", "_jp.a1b2c3", "a-b_c.d", "x" * 128])
def test_valid_callbacks(name: str) -> None:
    assert CALLBACK.fullmatch(name)


@pytest.mark.parametrize("name", ["", " ", "*", "abc(", "a;b", "a\nb", "x" * 129, "ä"])
def test_invalid_callbacks(name: str) -> None:
    assert not CALLBACK.fullmatch(name)
