"""Orbited.TCPSocket with a connection token in Chromium, through a server that requires
auth to a real echo server: a token function's token opens the relay (over WebSocket, and
over SockJS xhr-polling where it travels in the connect message); no token gives 4401."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page

from tests.auth.keys import SECRET, token
from tests.page_server import PageServer
from tests.server import RunningServer
from tests.tcp_servers import ThreadedEcho

PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><script src="@ORBITER@/static/orbiter.js"></script></head>
<body><script>
Orbited.settings.hostname = "127.0.0.1";
Orbited.settings.port = @PORT@;
window.echo = (port, options, transports) => new Promise((resolve) => {
  Orbited.settings.transports = transports;
  const sock = new Orbited.TCPSocket(options);
  let got = "";
  sock.onopen = () => sock.send("hello\\n");
  sock.onread = (text) => {
    got += text;
    if (got === "hello\\n") sock.close();
  };
  sock.onclose = (code) => resolve({ code, got });
  setTimeout(() => resolve({ code: "timeout", got }), 20000);
  sock.open("127.0.0.1", port);
});
</script></body></html>
"""


@pytest.fixture(scope="module")
def echo() -> Iterator[ThreadedEcho]:
    server = ThreadedEcho()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def page_url(echo: ThreadedEcho) -> Iterator[str]:
    site = PageServer({})
    orbiter = RunningServer(
        f'[auth]\nsecret = "{SECRET}"\n[origins]\nallow = ["{site.url}"]\n'
        f'[[tcp.access]]\nto = "127.0.0.1:{echo.port}"\n'
    )
    port = orbiter.url.rsplit(":", 1)[1]
    site.pages["/t.html"] = PAGE.replace("@ORBITER@", orbiter.url).replace("@PORT@", port)
    yield site.url + "/t.html"
    site.close()
    orbiter.stop()


@pytest.mark.parametrize("transports", [["websocket"], ["xhr-polling"]])
def test_a_token_function_opens_the_relay_and_none_is_refused(
    page_url: str, echo: ThreadedEcho, new_page: Callable[[], Page], transports: list[str]
) -> None:
    page = new_page()
    page.goto(page_url)
    with_token = page.evaluate(
        """([port, token, transports]) =>
          echo(port, { token: () => Promise.resolve(token) }, transports)""",
        [echo.port, token("alice"), transports],
    )
    assert with_token["got"] == "hello\n", with_token
    without = page.evaluate(
        "([port, transports]) => echo(port, undefined, transports)", [echo.port, transports]
    )
    assert without == {"code": 4401, "got": ""}
