"""Two Chromium pages chat over IRC: an IRC client written over orbiter.js's TCPSocket,
through orbiter's /tcp proxy, to a real ngircd."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import BLOCK_WEBSOCKET
from tests.support.page_server import PageServer
from tests.support.server import RunningServer
from tests.support.tcp_servers import Ngircd

#: A page with a small IRC client over the seed-era API (Orbited.TCPSocket).
IRC_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><script src="@ORBITER@/static/orbiter.js"></script></head>
<body><pre id="log"></pre>
<script>
Orbited.settings.hostname = "127.0.0.1";
Orbited.settings.port = @PORT@;
window.ORBITER_URL = "@ORBITER@";
window.irc = { lines: [], joined: false, closeCode: null, registered: false };
window.startIrc = function (host, port, nick, channel) {
  const sock = new Orbited.TCPSocket();
  let buffer = "";
  const send = (line) => sock.send(line + "\\r\\n");
  sock.onopen = () => { send("NICK " + nick); send("USER " + nick + " 0 * :" + nick); };
  sock.onread = (data) => {
    buffer += data;
    let i;
    while ((i = buffer.indexOf("\\r\\n")) >= 0) {
      const line = buffer.slice(0, i);
      buffer = buffer.slice(i + 2);
      const words = line.split(" ");
      if (words[0] === "PING") send("PONG " + words.slice(1).join(" "));
      else if (words[1] === "001") { window.irc.registered = true; send("JOIN " + channel); }
      else if (words[1] === "366") window.irc.joined = true;
      else if (words[1] === "PRIVMSG") {
        const from = words[0].slice(1).split("!")[0];
        const text = line.slice(line.indexOf(" :") + 2);
        window.irc.lines.push(from + ": " + text);
        document.getElementById("log").textContent += from + ": " + text + "\\n";
      }
    }
  };
  sock.onclose = (code) => { window.irc.closeCode = code; };
  window.irc.sock = sock;
  sock.open(host, port);
  window.irc.say = (text) => send("PRIVMSG " + channel + " :" + text);
  window.irc.quit = () => sock.close();
};
</script></body></html>
"""


@pytest.fixture(scope="module")
def ngircd() -> Iterator[Ngircd]:
    server = Ngircd()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def irc_server(ngircd: Ngircd) -> Iterator[RunningServer]:
    srv = RunningServer(f'[[tcp.access]]\nto = "127.0.0.1:{ngircd.port}"\n')
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def pages(irc_server: RunningServer) -> Iterator[PageServer]:
    """The test page on its own origin; it reaches orbiter as the seeds' pages do."""
    port = irc_server.url.rsplit(":", 1)[1]
    html = IRC_PAGE.replace("@PORT@", port).replace("@ORBITER@", irc_server.url)
    server = PageServer({"/irc.html": html})
    yield server
    server.close()


def irc_page(new_page: Callable[[], Page], pages: PageServer, *, block_ws: bool = False) -> Page:
    page = new_page()
    if block_ws:
        page.add_init_script(BLOCK_WEBSOCKET)
    page.goto(pages.url + "/irc.html")
    return page


def test_two_pages_chat_over_irc(
    pages: PageServer, ngircd: Ngircd, new_page: Callable[[], Page]
) -> None:
    ann, bob = irc_page(new_page, pages), irc_page(new_page, pages)
    for page, nick in ((ann, "ann"), (bob, "bob")):
        page.evaluate(f"startIrc('127.0.0.1', {ngircd.port}, '{nick}', '#orbiter')")
    for page in (ann, bob):
        page.wait_for_function("window.irc.joined")
    ann.evaluate("irc.say('hello from ann')")
    bob.wait_for_function("irc.lines.includes('ann: hello from ann')")
    bob.evaluate("irc.say('héllo ✓ from bob')")  # UTF-8 both ways
    ann.wait_for_function("irc.lines.includes('bob: héllo ✓ from bob')")
    ann.evaluate("irc.quit()")
    assert ann.evaluate("irc.closeCode") == 1000


def test_denied_destination_reports_4403(
    pages: PageServer, ngircd: Ngircd, new_page: Callable[[], Page]
) -> None:
    page = irc_page(new_page, pages)
    page.evaluate(f"startIrc('localhost', {ngircd.port}, 'eve', '#orbiter')")  # no rule
    page.wait_for_function("window.irc.closeCode !== null")
    assert page.evaluate("irc.closeCode") == 4403
    assert page.evaluate("irc.registered") is False


def test_stream_api_registers_with_ngircd(
    pages: PageServer, ngircd: Ngircd, new_page: Callable[[], Page]
) -> None:
    page = irc_page(new_page, pages)
    welcome = page.evaluate(
        """async (port) => {
          const conn = await Orbiter.connectTCP("127.0.0.1", port, { url: ORBITER_URL });
          const writer = conn.writable.getWriter();
          await writer.write(new TextEncoder().encode("NICK cat\\r\\nUSER cat 0 * :cat\\r\\n"));
          const reader = conn.readable.getReader();
          const decoder = new TextDecoder();
          let text = "";
          while (!text.includes(" 001 ")) {
            const { value, done } = await reader.read();
            if (done) break;
            text += decoder.decode(value, { stream: true });
          }
          conn.close();
          const closed = await conn.closed;
          let refused = null;
          try {
            await Orbiter.connectTCP("127.0.0.1", 1, { url: ORBITER_URL });
          } catch (err) {
            refused = err.code;
          }
          return { welcome: text.includes(" 001 cat "), code: closed.code, refused };
        }""",
        ngircd.port,
    )
    assert welcome == {"welcome": True, "code": 1000, "refused": 4403}


@pytest.mark.parametrize("transport", ["xhr-streaming", "xhr-polling"])
def test_irc_over_sockjs_when_websocket_is_blocked(
    pages: PageServer, ngircd: Ngircd, new_page: Callable[[], Page], transport: str
) -> None:
    ann = irc_page(new_page, pages, block_ws=True)
    bob = irc_page(new_page, pages)
    ann.evaluate(f"Orbited.settings.transports = ['websocket', '{transport}']")
    ann.evaluate(f"startIrc('127.0.0.1', {ngircd.port}, 'ann_{transport[4:8]}', '#sockjs')")
    bob.evaluate(f"startIrc('127.0.0.1', {ngircd.port}, 'bob_{transport[4:8]}', '#sockjs')")
    for page in (ann, bob):
        page.wait_for_function("window.irc.joined")
    assert ann.evaluate("irc.sock._channel.transport") == transport
    ann.evaluate("irc.say('from behind a proxy ✓')")
    bob.wait_for_function(f"irc.lines.includes('ann_{transport[4:8]}: from behind a proxy ✓')")
    bob.evaluate("irc.say('x'.repeat(400))")  # a long line: more than one read on the way
    ann.wait_for_function(f"irc.lines.includes('bob_{transport[4:8]}: ' + 'x'.repeat(400))")
    ann.evaluate("irc.quit()")
    assert ann.evaluate("irc.closeCode") == 1000
