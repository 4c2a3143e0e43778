"""The SockJS protocol's HTTP rules, against a real ``orbiter serve --sockjs-test-services``.

Each test states one rule of the protocol (as the public SockJS protocol
suite checks it) in its own words.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from tests.support.rawhttp import Head, RawConnection, fetch
from tests.support.sockjs_urls import SockJSUrls

NO_CACHE = "no-store, no-cache, no-transform, must-revalidate, max-age=0"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def content_type(head: Head) -> str:
    return (head.get("content-type") or "").replace(" ", "")


def assert_not_cached(head: Head) -> None:
    assert head.get("cache-control") == NO_CACHE
    assert head.get("expires") is None
    assert head.get("last-modified") is None


def assert_cors(head: Head, origin: str | None) -> None:
    if origin:
        assert head.get("access-control-allow-origin") == origin
        assert head.get("access-control-allow-credentials") == "true"
    else:
        assert head.get("access-control-allow-origin") == "*"
        assert head.get("access-control-allow-credentials") is None


def assert_cached_for_long(head: Head) -> None:
    assert "public" in (head.get("cache-control") or "")
    assert re.search(r"max-age=[1-9][0-9]{6}", head.get("cache-control") or "")
    assert head.get("expires")


async def send_only(url: str, method: str = "POST", **headers: str) -> RawConnection:
    """A request whose response is not read yet (a poll left waiting)."""
    conn = await RawConnection.open(url)
    await conn.send_request(method, "/" + url.split("/", 3)[3], headers=headers or None)
    return conn


async def open_stream(url: str, method: str = "POST", **headers: str) -> tuple[RawConnection, Head]:
    conn = await send_only(url, method, **headers)
    return conn, await conn.read_head()


# --------------------------------------------------------------------------- greeting


async def test_greeting_with_and_without_slash(sockjs: SockJSUrls) -> None:
    for url in (sockjs.echo, sockjs.echo + "/", sockjs.top):
        head, body = await fetch(url)
        assert head.status == 200
        assert content_type(head) == "text/plain;charset=UTF-8"
        assert body == b"Welcome to SockJS!\n"
        assert head.get("set-cookie") is None


@pytest.mark.parametrize("suffix", ["/a", "/a.html", "//", "///", "/a/a", "/a/a/", "/a/"])
async def test_other_paths_are_not_found(sockjs: SockJSUrls, suffix: str) -> None:
    head, _ = await fetch(sockjs.echo + suffix)
    assert head.status == 404


# --------------------------------------------------------------------------- iframe


IFRAME = re.compile(
    r'^<!DOCTYPE html>\n<html>\n<head>\n  <meta http-equiv="X-UA-Compatible" content="IE=edge" />\n'
    r'  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />\n'
    r'  <script src="(?P<src>[^"]*)"></script>\n  <script>\n'
    r"    document.domain = document.domain;\n    SockJS.bootstrap_iframe\(\);\n  </script>\n"
    r"</head>\n<body>\n  <h2>Don't panic!</h2>\n"
    r"  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>\n"
    r"</body>\n</html>$"
)


@pytest.mark.parametrize(
    "suffix",
    [
        "/iframe.html",
        "/iframe-a.html",
        "/iframe-.html",
        "/iframe-0.1.2.html",
        "/iframe-0.1.2abc-dirty.2144.html",
        "/iframe-a.html?t=1234",
        "/iframe-0.1.2abc-dirty.2144.html?t=qweqweq123",
    ],
)
async def test_iframe_page_is_served_for_every_version(sockjs: SockJSUrls, suffix: str) -> None:
    head, body = await fetch(sockjs.echo + suffix)
    assert head.status == 200
    assert content_type(head) == "text/html;charset=UTF-8"
    assert_cached_for_long(head)
    assert head.get("etag")
    assert head.get("last-modified") is None
    assert head.get("set-cookie") is None
    match = IFRAME.match(body.decode().strip())
    assert match is not None
    assert match.group("src").startswith(("/", "http"))


@pytest.mark.parametrize(
    "suffix",
    [
        "/iframe.htm",
        "/iframe",
        "/IFRAME.HTML",
        "/IFRAME",
        "/iframe.HTML",
        "/iframe.xml",
        "/iframe-/.html",
    ],
)
async def test_malformed_iframe_urls_are_not_found(sockjs: SockJSUrls, suffix: str) -> None:
    head, _ = await fetch(sockjs.echo + suffix)
    assert head.status == 404


async def test_iframe_etag_is_stable_and_if_none_match_gives_304(sockjs: SockJSUrls) -> None:
    first, _ = await fetch(sockjs.echo + "/iframe.html")
    second, _ = await fetch(sockjs.echo + "/iframe.html")
    assert first.get("etag")
    assert first.get("etag") == second.get("etag")
    etag = first.get("etag") or ""
    head, body = await fetch(sockjs.echo + "/iframe.html", headers={"If-None-Match": etag})
    assert head.status == 304
    assert head.get("content-type") is None
    assert body == b""


# --------------------------------------------------------------------------- info


async def test_info_describes_the_service(sockjs: SockJSUrls) -> None:
    head, body = await fetch(sockjs.echo + "/info", headers={"Origin": "test"})
    assert head.status == 200
    assert content_type(head) == "application/json;charset=UTF-8"
    assert head.get("set-cookie") is None
    assert_not_cached(head)
    assert_cors(head, "test")
    info = json.loads(body)
    assert info["websocket"] is True
    assert info["cookie_needed"] is False
    assert info["origins"] == ["*:*"]
    assert isinstance(info["entropy"], int)
    assert 0 <= info["entropy"] < 2**32


async def test_info_entropy_differs_each_time(sockjs: SockJSUrls) -> None:
    values = {json.loads((await fetch(sockjs.echo + "/info"))[1])["entropy"] for _ in range(3)}
    assert len(values) == 3


@pytest.mark.parametrize(
    ("suffix", "methods"),
    [
        ("/info", "OPTIONS, GET"),
        ("/abc/abc/xhr", "OPTIONS, POST"),
        ("/abc/abc/xhr_send", "OPTIONS, POST"),
        ("/abc/abc/xhr_streaming", "OPTIONS, POST"),
    ],
)
@pytest.mark.parametrize("origin", ["test", "null"])
async def test_preflight_is_cacheable_and_allows_the_methods(
    sockjs: SockJSUrls, suffix: str, methods: str, origin: str
) -> None:
    headers = {"Access-Control-Request-Method": methods, "Origin": origin}
    head, body = await fetch(sockjs.echo + suffix, "OPTIONS", headers=headers)
    assert head.status in (200, 204)
    assert_cached_for_long(head)
    assert int(head.get("access-control-max-age") or 0) > 1_000_000
    for method in methods.split(","):
        assert method.strip() in (head.get("access-control-allow-methods") or "")
    assert body == b""
    assert_cors(head, origin)


async def test_info_of_the_disabled_websocket_service(sockjs: SockJSUrls) -> None:
    _, body = await fetch(sockjs.wsoff + "/info")
    assert json.loads(body)["websocket"] is False


async def test_cors_echoes_requested_headers_only_when_asked(sockjs: SockJSUrls) -> None:
    url = SockJSUrls.session(sockjs.echo) + "/xhr"
    base = {"Origin": "test", "Access-Control-Request-Method": "POST"}
    head, _ = await fetch(
        url, "OPTIONS", headers={**base, "Access-Control-Request-Headers": "a, b, c"}
    )
    assert head.get("access-control-allow-headers") == "a, b, c"
    assert_cors(head, "test")
    for extra in ({"Access-Control-Request-Headers": ""}, {}):
        head, _ = await fetch(url, "OPTIONS", headers={**base, **extra})
        assert head.get("access-control-allow-headers") is None


# --------------------------------------------------------------------------- session URLs


@pytest.mark.parametrize("part", ["/a/a", "/_/_", "/1/1", "/abcdefgh_i-j%20/abcdefg_i-j%20"])
async def test_any_server_and_session_value_opens_a_session(sockjs: SockJSUrls, part: str) -> None:
    suffix = str(id(part))
    head, body = await fetch(sockjs.echo + part + suffix + "/xhr", "POST")
    assert (head.status, body) == (200, b"o\n")


@pytest.mark.parametrize("part", ["//", "/a./a", "/a/a.", "/./.", "/", "///"])
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_empty_or_dotted_ids_are_not_found(
    sockjs: SockJSUrls, part: str, method: str
) -> None:
    head, _ = await fetch(sockjs.echo + part + "/xhr", method)
    assert head.status == 404


async def test_the_server_id_is_ignored(sockjs: SockJSUrls) -> None:
    session = SockJSUrls.session(sockjs.echo).rsplit("/", 1)[1]
    assert (await fetch(f"{sockjs.echo}/000/{session}/xhr", "POST"))[1] == b"o\n"
    head, _ = await fetch(f"{sockjs.echo}/000/{session}/xhr_send", "POST", body=b'["a"]')
    assert head.status == 204
    assert (await fetch(f"{sockjs.echo}/999/{session}/xhr", "POST"))[1] == b'a["a"]\n'


# --------------------------------------------------------------------------- xhr polling


async def test_a_post_without_content_length_opens_a_session(sockjs: SockJSUrls) -> None:
    # No Content-Length and no body, as some HTTP clients send an empty POST.
    url = SockJSUrls.session(sockjs.echo) + "/xhr"
    conn = await RawConnection.open(url)
    try:
        conn.writer.write(
            f"POST /{url.split('/', 3)[3]} HTTP/1.1\r\nHost: {conn.host}\r\n\r\n".encode()
        )
        head = await conn.read_head()
        assert (head.status, await conn.read_body(head)) == (200, b"o\n")
    finally:
        await conn.close()


async def test_xhr_polling_round_trip_with_headers(sockjs: SockJSUrls) -> None:
    url = SockJSUrls.session(sockjs.echo)
    head, body = await fetch(url + "/xhr", "POST", headers={"Origin": "test"})
    assert (head.status, body) == (200, b"o\n")
    assert content_type(head) == "application/javascript;charset=UTF-8"
    assert_cors(head, "test")
    assert_not_cached(head)
    head, body = await fetch(url + "/xhr_send", "POST", headers={"Origin": "test"}, body=b'["x"]')
    assert (head.status, body) == (204, b"")
    assert content_type(head) == "text/plain;charset=UTF-8"
    assert_cors(head, "test")
    assert_not_cached(head)
    head, body = await fetch(url + "/xhr", "POST")
    assert (head.status, body) == (200, b'a["x"]\n')
    assert_cors(head, None)


async def test_sending_to_an_unknown_session_is_not_found(sockjs: SockJSUrls) -> None:
    url = SockJSUrls.session(sockjs.echo)
    assert (await fetch(url + "/xhr_send", "POST", body=b'["x"]'))[0].status == 404
    assert (await fetch(sockjs.echo + "/000/bad_session/xhr_send", "POST", body=b"[]"))[
        0
    ].status == 404


ORIGIN = "https://app.example"


@pytest.mark.parametrize(
    ("suffix", "method", "body", "status"),
    [
        ("/000/nobody/xhr_send", "POST", b'["x"]', 404),  # the unknown session
        ("/000/nobody/jsonp_send", "POST", b'["x"]', 404),
        ("/000/nobody/xhr_send", "GET", b"", 405),
        ("/000/s/jsonp", "GET", b"", 500),  # no callback
        ("/no/such/path/here", "GET", b"", 404),
    ],
)
async def test_error_answers_carry_the_cors_headers_of_a_success(
    sockjs: SockJSUrls, suffix: str, method: str, body: bytes, status: int
) -> None:
    """Issue 18: a cross-origin page sees the status, not a response blocked by CORS."""
    head, _ = await fetch(sockjs.echo + suffix, method, body=body, headers={"Origin": ORIGIN})
    assert head.status == status
    assert_cors(head, ORIGIN)
    head, _ = await fetch(sockjs.echo + suffix, method, body=body)
    assert head.status == status
    assert_cors(head, None)


async def test_a_body_over_the_limit_is_refused_with_the_cors_headers(sockjs: SockJSUrls) -> None:
    url = SockJSUrls.session(sockjs.echo)
    await fetch(url + "/xhr", "POST")
    too_big = b'["' + b"x" * 1_048_576 + b'"]'  # over limits.max_http_body
    head, answer = await fetch(url + "/xhr_send", "POST", body=too_big, headers={"Origin": ORIGIN})
    assert head.status == 413
    assert b"Payload too large" in answer
    assert_cors(head, ORIGIN)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'["x', b"Broken JSON encoding."),
        (b"", b"Payload expected."),
        (b'{"a": 1}', b"Payload expected."),
        (b"[1, 2]", b"Payload expected."),
    ],
)
async def test_xhr_send_rejects_bad_bodies_and_the_session_goes_on(
    sockjs: SockJSUrls, body: bytes, error: bytes
) -> None:
    url = SockJSUrls.session(sockjs.echo)
    await fetch(url + "/xhr", "POST")
    head, answer = await fetch(url + "/xhr_send", "POST", body=body)
    assert head.status == 500
    assert error in answer
    assert (await fetch(url + "/xhr_send", "POST", body=b'["a"]'))[0].status == 204
    assert (await fetch(url + "/xhr", "POST"))[1] == b'a["a"]\n'


async def test_xhr_send_accepts_any_content_type(sockjs: SockJSUrls) -> None:
    url = SockJSUrls.session(sockjs.echo)
    await fetch(url + "/xhr", "POST")
    types = ["text/plain", "T", "application/json", "application/xml", ""]
    types += ["application/json; charset=utf-8", "text/xml; charset=utf-8", "text/xml"]
    for ctype in types:
        head, body = await fetch(
            url + "/xhr_send", "POST", headers={"Content-Type": ctype}, body=b'["a"]'
        )
        assert (head.status, body) == (204, b"")
    assert (await fetch(url + "/xhr", "POST"))[1] == (
        "a[" + ",".join(['"a"'] * len(types)) + "]\n"
    ).encode()


async def test_empty_message_arrays_are_allowed(sockjs: SockJSUrls) -> None:
    url = SockJSUrls.session(sockjs.echo)
    await fetch(url + "/xhr", "POST")
    assert (await fetch(url + "/xhr_send", "POST", body=b"[]"))[0].status == 204
    assert (await fetch(url + "/xhr_send", "POST", body=b'["a"]'))[0].status == 204
    assert (await fetch(url + "/xhr", "POST"))[1] == b'a["a"]\n'


async def test_a_second_receiver_is_refused_and_the_first_keeps_the_session(
    sockjs: SockJSUrls,
) -> None:
    url = SockJSUrls.session(sockjs.echo)
    await fetch(url + "/xhr", "POST")
    first = await send_only(url + "/xhr")  # waits: nothing queued
    try:
        await asyncio.sleep(0.2)
        _, body = await fetch(url + "/xhr", "POST")
        assert body == b'c[2010,"Another connection still open"]\n'
        await fetch(url + "/xhr_send", "POST", body=b'["still mine"]')
        assert await first.read_body(await first.read_head()) == b'a["still mine"]\n'
    finally:
        await first.close()


async def test_a_closed_session_keeps_answering_with_its_close_frame(sockjs: SockJSUrls) -> None:
    url = SockJSUrls.session(sockjs.close)
    assert (await fetch(url + "/xhr", "POST"))[1] == b"o\n"
    for _ in range(2):
        head, body = await fetch(url + "/xhr", "POST")
        assert (head.status, body) == (200, b'c[3000,"Go away!"]\n')


# --------------------------------------------------------------------------- streaming


@dataclass(frozen=True)
class Streaming:
    """One streaming transport: how it is asked for, what it starts with, how it frames."""

    suffix: str
    method: str
    content_type: str
    #: Checks the prelude (the first chunk).
    prelude: Callable[[bytes], bool]
    #: The bytes of a SockJS frame (``o``, ``a[...]``) as this transport sends it.
    frame: Callable[[bytes], bytes]


def _htmlfile_frame(frame: bytes) -> bytes:
    return b"<script>\np(" + json.dumps(frame.decode()).encode() + b");\n</script>\r\n"


STREAMING = [
    Streaming(
        "/xhr_streaming",
        "POST",
        "application/javascript;charset=UTF-8",
        lambda prelude: prelude == b"h" * 2048 + b"\n",
        lambda frame: frame + b"\n",
    ),
    Streaming(
        "/eventsource",
        "GET",
        "text/event-stream",
        lambda prelude: prelude == b"\r\n",
        lambda frame: b"data: " + frame + b"\r\n\r\n",
    ),
    Streaming(
        "/htmlfile?c=%63allback",
        "GET",
        "text/html;charset=UTF-8",
        lambda prelude: prelude.decode().strip() == HTMLFILE_HEAD and len(prelude) > 1024,
        _htmlfile_frame,
    ),
]

HTMLFILE_HEAD = """<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.callback;
    c.start();
    function p(d) {c.message(d);};
    window.onload = function() {c.stop();};
  </script>"""


@contextlib.asynccontextmanager
async def stream(
    url: str, method: str = "POST", **headers: str
) -> AsyncIterator[tuple[RawConnection, Head]]:
    """A streaming response, open for the block, closed after it."""
    conn, head = await open_stream(url, method, **headers)
    try:
        yield conn, head
    finally:
        await conn.close()


@pytest.mark.parametrize("streaming", STREAMING, ids=lambda s: s.suffix)
async def test_streaming_prelude_frames_and_headers(
    sockjs: SockJSUrls, streaming: Streaming
) -> None:
    url = SockJSUrls.session(sockjs.echo)
    async with stream(url + streaming.suffix, streaming.method, Origin="test") as (conn, head):
        assert head.status == 200
        assert content_type(head) == streaming.content_type
        assert_cors(head, "test")
        assert_not_cached(head)
        assert streaming.prelude(await conn.read_chunk())
        assert await conn.read_chunk() == streaming.frame(b"o")
        assert (await fetch(url + "/xhr_send", "POST", body=b'["x"]'))[0].status == 204
        assert await conn.read_chunk() == streaming.frame(b'a["x"]')


@pytest.mark.parametrize("streaming", STREAMING, ids=lambda s: s.suffix)
async def test_streaming_ends_after_the_response_limit(
    sockjs: SockJSUrls, streaming: Streaming
) -> None:
    """The test services' limit is 4096 bytes of frames (the prelude aside): the frame that
    reaches it is the last, the one before it is not."""
    url = SockJSUrls.session(sockjs.echo)
    message = '"' + "x" * 128 + '"'
    frame = streaming.frame(f"a[{message}]".encode())
    opened = len(streaming.frame(b"o"))
    last = -(-(4096 - opened) // len(frame))  # the frame that takes it to 4096 or past
    async with stream(url + streaming.suffix, streaming.method) as (conn, _):
        await conn.read_chunk()
        assert await conn.read_chunk() == streaming.frame(b"o")
        for _ in range(last):
            await fetch(url + "/xhr_send", "POST", body=f"[{message}]".encode())
            assert await conn.read_chunk() == frame
        assert await conn.read_chunk() == b""


async def echoed(sockjs: SockJSUrls, suffix: str, body: bytes) -> bytes:
    """The frame that carries the echo of ``body`` (an ``xhr_send``) on a new stream."""
    url = SockJSUrls.session(sockjs.echo)
    async with stream(url + suffix, "GET") as (conn, _):
        await conn.read_chunk()  # the prelude
        await conn.read_chunk()  # the open frame
        await fetch(url + "/xhr_send", "POST", body=body)
        return await conn.read_chunk()


async def test_eventsource_escapes_line_breaks(sockjs: SockJSUrls) -> None:
    frame = await echoed(sockjs, "/eventsource", rb'["  \u0000\n\r "]')
    assert frame == b'data: a["  \\u0000\\n\\r "]\r\n\r\n'


async def test_htmlfile_frames_cannot_end_the_script_early(sockjs: SockJSUrls) -> None:
    frame = await echoed(sockjs, "/htmlfile?c=cb", b'["</script><b>"]')
    assert b"</script><b>" not in frame
    inner = frame.removeprefix(b"<script>\np(").removesuffix(b");\n</script>\r\n")
    assert json.loads(json.loads(inner)[1:]) == ["</script><b>"]


# --------------------------------------------------------------------------- callbacks


@pytest.mark.parametrize("transport", ["htmlfile", "jsonp"])
async def test_callback_is_required(sockjs: SockJSUrls, transport: str) -> None:
    head, body = await fetch(f"{sockjs.echo}/a/a/{transport}")
    assert head.status == 500
    assert b'"callback" parameter required' in body


@pytest.mark.parametrize("transport", ["htmlfile", "jsonp"])
@pytest.mark.parametrize("callback", ["%20", "*", "abc(", "abc%28", "a" * 200])
async def test_callback_must_be_a_plain_name(
    sockjs: SockJSUrls, transport: str, callback: str
) -> None:
    head, body = await fetch(f"{sockjs.echo}/a/a/{transport}?c={callback}")
    assert head.status == 500
    assert b'invalid "callback" parameter' in body


# --------------------------------------------------------------------------- jsonp


async def test_jsonp_polling_round_trip(sockjs: SockJSUrls) -> None:
    url = SockJSUrls.session(sockjs.echo)
    head, body = await fetch(url + "/jsonp?c=%63allback")
    assert (head.status, body) == (200, b'/**/callback("o");\r\n')
    assert content_type(head) == "application/javascript;charset=UTF-8"
    assert_not_cached(head)
    head, body = await fetch(url + "/jsonp_send", "POST", headers=FORM, body=b"d=%5B%22x%22%5D")
    assert (head.status, body) == (200, b"ok")
    assert content_type(head) == "text/plain;charset=UTF-8"
    assert_not_cached(head)
    assert (await fetch(url + "/jsonp?c=%63allback"))[1] == b'/**/callback("a[\\"x\\"]");\r\n'


async def test_jsonp_send_errors(sockjs: SockJSUrls) -> None:
    url = SockJSUrls.session(sockjs.echo)
    await fetch(url + "/jsonp?c=x")
    head, body = await fetch(url + "/jsonp_send", "POST", headers=FORM, body=b"d=%5B%22x")
    assert head.status == 500
    assert b"Broken JSON encoding." in body
    for data in (b"", b"d=", b"p=p"):
        head, body = await fetch(url + "/jsonp_send", "POST", headers=FORM, body=data)
        assert head.status == 500
        assert b"Payload expected." in body
    assert (await fetch(url + "/jsonp_send", "POST", headers=FORM, body=b"d=%5B%22b%22%5D"))[
        1
    ] == b"ok"
    assert (await fetch(url + "/jsonp?c=x"))[1] == b'/**/x("a[\\"b\\"]");\r\n'


async def test_jsonp_send_takes_forms_and_plain_bodies(sockjs: SockJSUrls) -> None:
    url = SockJSUrls.session(sockjs.echo)
    await fetch(url + "/jsonp?c=x")
    await fetch(url + "/jsonp_send", "POST", headers=FORM, body=b"d=%5B%22abc%22%5D")
    text = {"Content-Type": "text/plain"}
    assert (await fetch(url + "/jsonp_send", "POST", headers=text, body=b'["%61bc"]'))[1] == b"ok"
    assert (await fetch(url + "/jsonp?c=x"))[1] == b'/**/x("a[\\"abc\\",\\"%61bc\\"]");\r\n'


async def test_jsonp_on_a_closed_session_and_empty_arrays(sockjs: SockJSUrls) -> None:
    url = SockJSUrls.session(sockjs.close)
    assert (await fetch(url + "/jsonp?c=x"))[1] == b'/**/x("o");\r\n'
    for _ in range(2):
        assert (await fetch(url + "/jsonp?c=x"))[1] == b'/**/x("c[3000,\\"Go away!\\"]");\r\n'
    url = SockJSUrls.session(sockjs.echo)
    await fetch(url + "/jsonp?c=x")
    assert (await fetch(url + "/jsonp_send", "POST", headers=FORM, body=b"d=%5B%5D"))[1] == b"ok"
    await fetch(url + "/jsonp_send", "POST", headers=FORM, body=b"d=%5B%22x%22%5D")
    assert (await fetch(url + "/jsonp?c=x"))[1] == b'/**/x("a[\\"x\\"]");\r\n'


# --------------------------------------------------------------------------- JSESSIONID


def cookie_parts(head: Head) -> list[str]:
    return [part.strip().lower() for part in (head.get("set-cookie") or "").split(";")]


async def test_cookie_needed_service(sockjs: SockJSUrls) -> None:
    head, body = await fetch(sockjs.cookie + "/info")
    assert json.loads(body)["cookie_needed"] is True
    assert head.get("set-cookie") is None
    url = SockJSUrls.session(sockjs.cookie)
    head, _ = await fetch(url + "/xhr", "POST")
    assert cookie_parts(head)[:2] == ["jsessionid=dummy", "path=/"]
    head, _ = await fetch(url + "/xhr_send", "POST", body=b"[]")
    assert cookie_parts(head)[:2] == ["jsessionid=dummy", "path=/"]
    head, _ = await fetch(
        SockJSUrls.session(sockjs.cookie) + "/xhr", "POST", headers={"Cookie": "JSESSIONID=abcdef"}
    )
    assert cookie_parts(head)[:2] == ["jsessionid=abcdef", "path=/"]


@pytest.mark.parametrize(
    ("suffix", "method"),
    [("/xhr_streaming", "POST"), ("/eventsource", "GET"), ("/htmlfile?c=cb", "GET")],
)
async def test_cookie_on_streaming_transports(sockjs: SockJSUrls, suffix: str, method: str) -> None:
    conn, head = await open_stream(SockJSUrls.session(sockjs.cookie) + suffix, method)
    await conn.close()
    assert head.status == 200
    assert cookie_parts(head)[:2] == ["jsessionid=dummy", "path=/"]


async def test_cookie_on_jsonp(sockjs: SockJSUrls) -> None:
    url = SockJSUrls.session(sockjs.cookie)
    head, body = await fetch(url + "/jsonp?c=cb")
    assert body == b'/**/cb("o");\r\n'
    assert cookie_parts(head)[:2] == ["jsessionid=dummy", "path=/"]
    head, _ = await fetch(url + "/jsonp_send", "POST", headers=FORM, body=b"d=%5B%5D")
    assert cookie_parts(head)[:2] == ["jsessionid=dummy", "path=/"]


async def test_no_cookie_unless_the_service_needs_it(sockjs: SockJSUrls) -> None:
    head, _ = await fetch(SockJSUrls.session(sockjs.echo) + "/xhr", "POST")
    assert head.get("set-cookie") is None


# --------------------------------------------------------------------------- JSON encoding

SERVER_ESCAPED = re.compile("[\x00-\x1f\u200c-\u200f\u2028-\u202f\u2060-\u206f\ufff0-\uffff]")


async def test_server_escapes_the_code_points_browsers_mangle(sockjs: SockJSUrls) -> None:
    escaped = [i for i in range(255, 65536) if SERVER_ESCAPED.match(chr(i))]
    raw = "".join(chr(i) for i in escaped)
    url = SockJSUrls.session(sockjs.echo)
    await fetch(url + "/xhr", "POST")
    await fetch(url + "/xhr_send", "POST", body=('["' + raw + '"]').encode())
    _, body = await fetch(url + "/xhr", "POST")
    assert body.decode().strip()[2:-1] == '"' + "".join(f"\\u{i:04x}" for i in escaped) + '"'


async def test_server_decodes_what_the_client_escapes(sockjs: SockJSUrls) -> None:
    # Every code point the client escapes lies in these ranges (under the 64 KiB limit).
    text = "".join(
        chr(i) for i in (*range(0x3040), *range(0xAAB0, 0xAAC0), *range(0xF900, 0x10000))
    )
    escaped = json.dumps(text, ensure_ascii=True)
    url = SockJSUrls.session(sockjs.echo)
    await fetch(url + "/xhr", "POST")
    assert (await fetch(url + "/xhr_send", "POST", body=f"[{escaped}]".encode()))[0].status == 204
    _, body = await fetch(url + "/xhr", "POST")
    assert json.loads(body.decode().strip()[2:-1]) == text


# --------------------------------------------------------------------------- closing


async def test_closing_unlinks_the_receiver_and_later_ones_get_the_close_frame(
    sockjs: SockJSUrls,
) -> None:
    url = SockJSUrls.session(sockjs.close)
    async with stream(url + "/xhr_streaming") as (first, _):
        await first.read_chunk()
        assert await first.read_chunk() == b"o\n"
        assert await first.read_chunk() == b'c[3000,"Go away!"]\n'
        async with stream(url + "/xhr_streaming") as (second, _):
            await second.read_chunk()
            assert await second.read_chunk() == b'c[3000,"Go away!"]\n'
            assert await first.read_chunk() == b""
            assert await second.read_chunk() == b""


async def test_second_streaming_receiver_gets_2010_and_ends(sockjs: SockJSUrls) -> None:
    url = SockJSUrls.session(sockjs.echo)
    async with stream(url + "/xhr_streaming") as (first, _):
        await first.read_chunk()
        assert await first.read_chunk() == b"o\n"
        async with stream(url + "/xhr_streaming") as (second, _):
            await second.read_chunk()
            assert await second.read_chunk() == b'c[2010,"Another connection still open"]\n'
            assert await second.read_chunk() == b""


@pytest.mark.parametrize("suffix", ["/xhr_streaming", "/xhr"])
async def test_a_receiver_that_breaks_off_ends_the_session(sockjs: SockJSUrls, suffix: str) -> None:
    url = SockJSUrls.session(sockjs.echo)
    if suffix == "/xhr":
        await fetch(url + "/xhr", "POST")
    first = await send_only(url + suffix)
    if suffix == "/xhr_streaming":
        await first.read_head()
        await first.read_chunk()
        await first.read_chunk()
    else:
        await asyncio.sleep(0.2)
    _, body = await fetch(url + "/xhr", "POST")
    assert body == b'c[2010,"Another connection still open"]\n'
    await first.close()
    _, body = await fetch(url + "/xhr", "POST")
    assert body in (b"o\n", b'c[1002,"Connection interrupted"]\n')


# --------------------------------------------------------------------------- HTTP versions


async def test_http10_greeting_keeps_alive_when_asked(sockjs: SockJSUrls) -> None:
    conn = await RawConnection.open(sockjs.echo)
    try:
        path = "/sockjs/echo"
        head = await conn.request("GET", path, headers={"Connection": "Keep-Alive"}, version="1.0")
        assert head.status == 200
        assert head.get("transfer-encoding") is None
        assert int(head.get("content-length") or 0) == 19
        assert await conn.read_exactly(19) == b"Welcome to SockJS!\n"
        assert (head.get("connection") or "").lower() == "keep-alive"
        again = await conn.request("GET", path, headers={"Connection": "Keep-Alive"}, version="1.0")
        assert again.status == 200
    finally:
        await conn.close()


async def test_http10_streaming_ends_with_the_connection(sockjs: SockJSUrls) -> None:
    url = SockJSUrls.session(sockjs.close)
    conn = await RawConnection.open(url)
    try:
        path = "/" + url.split("/", 3)[3] + "/xhr_streaming"
        head = await conn.request("POST", path, headers={"Connection": "Keep-Alive"}, version="1.0")
        assert head.status == 200
        assert head.get("transfer-encoding") is None
        assert head.get("content-length") is None
        assert (await conn.read_exactly(2049))[:1] == b"h"
        assert await conn.read_exactly(2) == b"o\n"
        assert await conn.read_exactly(19) == b'c[3000,"Go away!"]\n'
        assert await conn.closed_by_server()
    finally:
        await conn.close()


async def test_http11_greeting_and_streaming_are_chunked_or_sized(sockjs: SockJSUrls) -> None:
    conn = await RawConnection.open(sockjs.echo)
    try:
        head = await conn.request("GET", "/sockjs/echo", headers={"Connection": "Keep-Alive"})
        assert (head.get("connection") or "").lower() in ("keep-alive", "")
        assert await conn.read_body(head) == b"Welcome to SockJS!\n"
        path = "/" + SockJSUrls.session(sockjs.close).split("/", 3)[3] + "/xhr_streaming"
        head = await conn.request("POST", path)
        assert head.get("transfer-encoding") == "chunked"
        assert head.get("content-length") is None
        assert (await conn.read_chunk())[:1] == b"h"
        assert await conn.read_chunk() == b"o\n"
        assert await conn.read_chunk() == b'c[3000,"Go away!"]\n'
        assert await conn.read_chunk() == b""
    finally:
        await conn.close()
