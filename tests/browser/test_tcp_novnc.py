"""noVNC's own websockify transport (its Websock class, from npm) through /tcp in Chromium,
to a real TCP echo server. noVNC 1.x speaks the ``binary`` subprotocol only (the ``base64``
mode, for older websockify clients, is tested from Python in tests/e2e/test_tcp_proxy.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page

from tests.support.npm import npm_file
from tests.support.page_server import PageServer
from tests.support.server import RunningServer
from tests.support.tcp_servers import ThreadedEcho

NOVNC = "@novnc/novnc"

PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"></head><body>
<script type="module">
import Websock from "/novnc/core/websock.js";
window.echoThrough = (url, protocols, bytes) => new Promise((resolve, reject) => {
  const sock = new Websock();
  const want = bytes.length;
  sock.on("open", () => { sock.sQpushBytes(new Uint8Array(bytes)); sock.flush(); });
  sock.on("message", () => {
    if (sock.rQlen() >= want) {
      const got = Array.from(sock.rQshiftBytes(want));
      const protocol = sock._websocket.protocol;
      sock.close();
      resolve({ got, protocol });
    }
  });
  sock.on("close", (e) => reject(new Error("closed " + e.code)));
  setTimeout(() => reject(new Error("no echo within 10 s")), 10000);
  sock.on("error", () => {});
  sock.open(url, protocols);
});
window.ready = true;
</script></body></html>
"""


@pytest.fixture(scope="module")
def orbiter(echo: ThreadedEcho) -> Iterator[RunningServer]:
    srv = RunningServer(f'[[tcp.access]]\nto = "127.0.0.1:{echo.port}"\n')
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def pages() -> Iterator[PageServer]:
    server = PageServer(
        {
            "/novnc.html": PAGE,
            "/novnc/core/websock.js": npm_file(f"{NOVNC}/core/websock.js").read_text(),
            "/novnc/core/util/logging.js": npm_file(f"{NOVNC}/core/util/logging.js").read_text(),
        }
    )
    yield server
    server.close()


def test_novnc_websock_through_tcp(
    orbiter: RunningServer, echo: ThreadedEcho, pages: PageServer, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    page.goto(pages.url + "/novnc.html")
    page.wait_for_function("window.ready")
    url = orbiter.url.replace("http://", "ws://") + f"/tcp/127.0.0.1:{echo.port}"
    data = list(range(256)) * 4
    result = page.evaluate(f"echoThrough('{url}', ['binary'], {data})")
    assert result == {"got": data, "protocol": "binary"}
