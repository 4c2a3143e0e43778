"""Orbited.TCPSocket with a connection token in Chromium, through a server that requires
auth to a real echo server: a token function's token opens the relay (over WebSocket, and
over SockJS xhr-polling where it travels in the connect message); no token gives 4401."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page

from orbiter.ports import free_port
from tests.support.keys import SECRET, token
from tests.support.page_server import PageServer
from tests.support.server import RunningServer
from tests.support.tcp_servers import ThreadedEcho

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


STOMP_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><script src="@ORBITER@/static/orbiter.js"></script></head>
<body><script>
window.result = { messages: [], errors: [], closeCode: null };
window.startStomp = (port, options) => {
  const stomp = new STOMPClient(Object.assign({ transport: "tcp", url: "@ORBITER@" }, options));
  stomp.onconnectedframe = () => {
    stomp.subscribe("/topic/chat:tcp", { receipt: "sub" });
  };
  stomp.onreceiptframe = () => stomp.send("over the proxy", "/topic/chat:tcp");
  stomp.onmessageframe = (frame) => result.messages.push(frame.body);
  stomp.onerrorframe = (frame) => result.errors.push(frame.body);
  stomp.onclose = (code) => { result.closeCode = code; };
  stomp.connect("127.0.0.1", port, "", options.passcode);
};
</script></body></html>
"""


def test_stomp_client_over_the_proxy_sends_its_tcp_token(
    new_page: Callable[[], Page],
) -> None:
    """STOMPClient({transport: "tcp", tcpToken}): the token opens the relay; the STOMP
    passcode (the same token here) is the embedded broker's own check."""
    stomp_port = free_port()
    site = PageServer({})
    orbiter = RunningServer(
        f'[auth]\nsecret = "{SECRET}"\n[origins]\nallow = ["{site.url}"]\n'
        f'[stomp]\nlisten = "127.0.0.1:{stomp_port}"\n'
        f'[[tcp.access]]\nto = "127.0.0.1:{stomp_port}"\n'
    )
    try:
        site.pages["/s.html"] = STOMP_PAGE.replace("@ORBITER@", orbiter.url)
        page = new_page()
        page.goto(site.url + "/s.html")
        jwt = token("alice")
        page.evaluate(
            "([port, t]) => startStomp(port, { tcpToken: t, passcode: t })", [stomp_port, jwt]
        )
        page.wait_for_function("result.messages.length || result.closeCode !== null")
        assert page.evaluate("result.messages") == ["over the proxy"]
        refused = new_page()
        refused.goto(site.url + "/s.html")
        refused.evaluate("([port, t]) => startStomp(port, { passcode: t })", [stomp_port, jwt])
        refused.wait_for_function("result.closeCode !== null")
        assert refused.evaluate("result.closeCode") == 4401
    finally:
        site.close()
        orbiter.stop()
