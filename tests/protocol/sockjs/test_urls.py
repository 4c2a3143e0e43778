from __future__ import annotations

import pytest

from orbiter.protocol.sockjs.urls import (
    Greeting,
    Iframe,
    Info,
    RawWebSocket,
    SessionUrl,
    parse,
    split_service,
)


@pytest.mark.parametrize(
    ("tail", "target"),
    [
        ("", Greeting()),
        ("/", Greeting()),
        ("/info", Info()),
        ("/websocket", RawWebSocket()),
        ("/iframe.html", Iframe()),
        ("/iframe-0.1.2abc-dirty.2144.html", Iframe()),
        ("/000/abc/xhr", SessionUrl("abc", "xhr")),
        ("/a/a%20b/jsonp_send", SessionUrl("a b", "jsonp_send")),
        ("/_/_/websocket", SessionUrl("_", "websocket")),
    ],
)
def test_known_urls(tail: str, target: object) -> None:
    assert parse(tail) == target


@pytest.mark.parametrize(
    "tail",
    [
        "info",
        "/a",
        "//",
        "/a/a",
        "/a/a/",
        "/a/a/a",
        "/IFRAME.HTML",
        "/iframe-/.html",
        "/a./a/xhr",
        "/a/a./xhr",
        "//a/xhr",
        "/a//xhr",
        "/a/b/c/xhr",
        "/a/b/XHR",
    ],
)
def test_unknown_urls(tail: str) -> None:
    assert parse(tail) is None


def test_split_service() -> None:
    services = {"echo", "close"}
    assert split_service("/echo/info", services) == ("echo", "/info")
    assert split_service("/echo", services) == ("echo", "")
    assert split_service("/echoes/info", services) == ("", "/echoes/info")
    assert split_service("/info", services) == ("", "/info")
    assert split_service("", services) == ("", "")
