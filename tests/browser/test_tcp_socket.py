"""Orbited.TCPSocket's data handling in Chromium, through /tcp to a real echo server:
binary mode (one char per byte), large sends split and reassembled, UTF-8 split across reads."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page

from tests.support.page_server import PageServer
from tests.support.server import RunningServer
from tests.support.tcp_servers import ThreadedEcho

PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><script src="@ORBITER@/static/orbiter.js"></script></head>
<body><script>
Orbited.settings.hostname = "127.0.0.1";
Orbited.settings.port = @PORT@;
window.echo = (port, data, binary, expected) => new Promise((resolve, reject) => {
  const sock = new Orbited.TCPSocket();
  let got = "";
  sock.onopen = () => sock.send(data);
  sock.onread = (text) => {
    got += text;
    if (got.length >= expected) { sock.close(); resolve(got); }
  };
  sock.onclose = (code) => { if (got.length < expected) reject(new Error("closed " + code)); };
  setTimeout(() => reject(new Error("timed out with " + got.length)), 20000);
  sock.open("127.0.0.1", port, binary);
});
</script></body></html>
"""


@pytest.fixture(scope="module")
def page_url(echo: ThreadedEcho) -> Iterator[str]:
    orbiter = RunningServer(f'[[tcp.access]]\nto = "127.0.0.1:{echo.port}"\n')
    port = orbiter.url.rsplit(":", 1)[1]
    site = PageServer({"/t.html": PAGE.replace("@ORBITER@", orbiter.url).replace("@PORT@", port)})
    yield site.url + "/t.html"
    site.close()
    orbiter.stop()


def test_binary_mode_carries_every_byte(
    page_url: str, echo: ThreadedEcho, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    page.goto(page_url)
    got = page.evaluate(
        """(port) => {
          let data = "";
          for (let i = 0; i < 256; i++) data += String.fromCharCode(i);
          data = data.repeat(1000);  // 256000 bytes: several frames each way
          return echo(port, data, true, data.length).then((got) => got === data);
        }""",
        echo.port,
    )
    assert got is True


def test_text_mode_utf8_split_across_reads(
    page_url: str, echo: ThreadedEcho, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    page.goto(page_url)
    got = page.evaluate(
        """(port) => {
          const data = "héllo ✓ 😀 ".repeat(20000);  // multi-byte chars cut by TCP reads
          return echo(port, data, false, data.length).then((got) => got === data);
        }""",
        echo.port,
    )
    assert got is True
