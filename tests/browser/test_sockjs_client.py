"""The unmodified npm ``sockjs-client`` in Chromium, each transport forced in turn.

The client script comes from ``tests/js/node_modules`` (``npm ci`` in
``tests/js``); everything else is the real server's SockJS ``echo`` service.
``sockjs.client_url`` points the server's ``iframe.html`` at the same
script, so the iframe transports load the very same client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, Route

from tests.support.npm import npm_file
from tests.support.server import RunningServer

CLIENT = "sockjs-client/dist/sockjs.min.js"
SCRIPT_PATH = "/sockjs-client-test/sockjs.min.js"

TRANSPORTS = [
    "websocket",
    "xhr-streaming",
    "eventsource",
    "iframe-eventsource",
    "htmlfile",
    "iframe-htmlfile",
    "xhr-polling",
    "iframe-xhr-polling",
    "jsonp-polling",
]

MESSAGES = ["hello, SockJS", 'zażółć 日本 🎉 \u2028 "quoted" </script>', "x" * 65_536]

ECHO = """
async ({url, transport, messages}) => await new Promise((resolve, reject) => {
  const sock = new SockJS(url, null, {transports: [transport]});
  const got = [];
  const timer = setTimeout(() => reject(new Error(
    `timed out on ${sock.transport}: ${got.length} of ${messages.length} back`)), 30000);
  sock.onopen = () => messages.forEach((m) => sock.send(m));
  sock.onmessage = (event) => {
    got.push(event.data);
    if (got.length === messages.length) {
      clearTimeout(timer);
      const used = sock.transport;
      sock.close();
      resolve({transport: used, got});
    }
  };
  sock.onclose = (event) => {
    clearTimeout(timer);
    reject(new Error(`closed ${event.code} ${event.reason} on ${sock.transport}`));
  };
})
"""


@pytest.fixture(scope="module")
def sockjs_server() -> Iterator[RunningServer]:
    server = RunningServer(f'[sockjs]\ntest_services = true\nclient_url = "{SCRIPT_PATH}"\n')
    yield server
    server.stop()


def open_test_page(page: Page, server: RunningServer, origin: str) -> None:
    """The echo service's greeting page (a real page of the server's origin) with the client.

    Chromium's local-network checks block WebSockets from pages that did not
    come from the network, so the page is the server's own; the script is
    put in by Playwright, and so is the copy that ``iframe.html`` loads.
    """
    # scripts/test installs it; a missing client is a failure, not a skip.
    client = npm_file(CLIENT)
    script = client.read_bytes()

    def serve_script(route: Route) -> None:
        route.fulfill(body=script, content_type="application/javascript; charset=UTF-8")

    # On the context, so that the iframe transports' frames get it too.
    page.context.route(server.url + SCRIPT_PATH, serve_script)
    page.goto(origin + "/sockjs/echo")
    page.add_script_tag(path=client)
    page.wait_for_function("typeof SockJS === 'function'")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_echo_over_each_transport(
    sockjs_server: RunningServer, new_page: Callable[[], Page], transport: str
) -> None:
    page = new_page()
    open_test_page(page, sockjs_server, sockjs_server.url)
    result = echo(page, sockjs_server.url + "/sockjs/echo", transport)
    assert result["transport"] == transport
    assert result["got"] == MESSAGES


# htmlfile needs the page's origin (sockjs-client turns it off across origins).
@pytest.mark.parametrize("transport", [t for t in TRANSPORTS if t != "htmlfile"])
def test_echo_from_another_origin(
    sockjs_server: RunningServer, new_page: Callable[[], Page], transport: str
) -> None:
    """The page is on ``localhost``, the server is addressed as ``127.0.0.1``: CORS."""
    page = new_page()
    open_test_page(page, sockjs_server, sockjs_server.url.replace("127.0.0.1", "localhost"))
    result = echo(page, sockjs_server.url + "/sockjs/echo", transport)
    assert result["transport"] == transport
    assert result["got"] == MESSAGES


def echo(page: Page, url: str, transport: str) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(
        ECHO, {"url": url, "transport": transport, "messages": MESSAGES}
    )
    return result
