"""Plain SSE, long polling and the Orbited 0.3 URLs from pages in headless Chromium.

Each page is written the way its era wrote it: a bare ``EventSource``, the
seeds' JSONP script-tag poll, Orbited's ``eval(xhr.responseText)`` loop and
its iframe calling ``event(data)`` in the parent. Pages are served at the
server's (or the relay's) origin by Playwright, so they are same-origin with
orbiter as such pages were. The SSE drop test cuts the browser's connection
with the relay while messages are being published; ``EventSource``
reconnects by itself with ``Last-Event-ID`` and every message arrives once,
in order.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

from playwright.sync_api import Dialog, Page, Route

from orbiter.client import Client
from tests.browser.conftest import WAIT
from tests.support.relay import Relay
from tests.support.server import RunningServer

ATTACK = "</script><script>alert(1)</script>\u2028<!--"


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def serve_page(page: Page, origin: str, html: str) -> None:
    """Open ``html`` as if ``origin`` served it (Playwright answers; nothing else is routed)."""
    url = f"{origin}/__test_page__"

    def fulfill(route: Route) -> None:
        route.fulfill(status=200, content_type="text/html; charset=utf-8", body=html)

    page.route(url, fulfill)
    # Not "load": a held poll or a streaming iframe keeps the page loading.
    page.goto(url, wait_until="domcontentloaded")


def wait_until_subscribed(server: RunningServer, channel: str, count: int = 1) -> None:
    client = Client(server.url)
    deadline = time.monotonic() + WAIT / 1000
    while client.channels().get(channel, 0) < count:
        assert time.monotonic() < deadline, f"nobody subscribed to {channel!r}"
        time.sleep(0.05)


SSE_PAGE = """<!DOCTYPE html><meta charset="utf-8"><script>
window.got = []; window.opens = 0; window.subscribed = [];
const es = new EventSource("/connection/sse?channel=" + encodeURIComponent("%s"));
es.onopen = () => { window.opens += 1; };
es.addEventListener("subscribed", (e) => window.subscribed.push(JSON.parse(e.data)));
es.addEventListener("unrecoverable", (e) => { window.lost = JSON.parse(e.data); });
es.onmessage = (e) => {
  for (const push of JSON.parse(e.data)) if (push.push === "pub") window.got.push(push.data);
};
</script>"""


def test_eventsource_reconnects_by_itself_and_loses_nothing(
    server: RunningServer, relay: Relay, new_page: Callable[[], Page]
) -> None:
    channel = unique("sse:drop:")
    page = new_page()
    serve_page(page, relay.url, SSE_PAGE % channel)
    page.wait_for_function("window.subscribed.length === 1")

    total = 60
    api = Client(server.url)

    def publish() -> None:
        for n in range(total):
            api.publish(channel, n)
            time.sleep(0.02)

    publisher = threading.Thread(target=publish)
    publisher.start()
    page.wait_for_function("window.got.length >= 15")
    relay.cut()  # mid-stream: the rest is published while the browser is away
    time.sleep(0.8)
    relay.restore()
    publisher.join()

    page.wait_for_function(f"window.got.length >= {total}", timeout=WAIT * 2)
    page.wait_for_timeout(300)  # would a duplicate follow?
    assert page.evaluate("window.got") == list(range(total))
    assert page.evaluate("window.opens") >= 2
    resumed = page.evaluate("window.subscribed[window.subscribed.length - 1]")
    assert resumed["channels"][0]["recovered"] is True
    assert page.evaluate("window.lost === undefined")


JSONP_PAGE = """<!DOCTYPE html><meta charset="utf-8"><script>
window.got = []; window.answers = 0;
let since = null, epoch = null;
window.chat = { onData(page) {
  window.answers += 1;
  for (const p of page.publications) window.got.push(p.data);
  since = page.offset; epoch = page.epoch;
  next();
} };
function next() {
  const s = document.createElement("script");
  let src = "/poll?channel=%s&callback=chat.onData";
  if (since !== null) src += "&since=" + since + "&epoch=" + encodeURIComponent(epoch);
  s.src = src;
  s.onload = () => s.remove();
  document.head.appendChild(s);
}
next();
</script>"""


def test_jsonp_script_tag_polling_like_the_seed_chat(
    server: RunningServer, new_page: Callable[[], Page]
) -> None:
    channel = unique("lp:browser:")
    page = new_page()
    serve_page(page, server.url, JSONP_PAGE % channel)
    page.wait_for_function("window.answers >= 1")  # the first answer: where to start
    wait_until_subscribed(server, channel)  # the next poll is held
    api = Client(server.url)
    sent = [{"n": n, "text": f"<i>{n}</i>"} for n in range(10)]
    for data in sent:
        api.publish(channel, data)
    page.wait_for_function(f"window.got.length >= {len(sent)}")
    page.wait_for_timeout(200)
    assert page.evaluate("window.got") == sent


XHR_PAGE = """<!DOCTYPE html><meta charset="utf-8"><script>
window.got = [];
function event(data) { window.got.push(data); }
function long_polling() {
  var xhr = new XMLHttpRequest();
  xhr.onreadystatechange = function () {
    if (xhr.readyState == 4 && xhr.status == 200) {
      var data = eval(xhr.responseText);
      if (data != undefined) { event(data); }
      long_polling();
    }
  };
  xhr.open("GET", "/chat|%s,0,xhr");
  xhr.send(null);
}
long_polling();
</script>"""


def test_orbited_xhr_page_evals_every_event_in_order(
    server: RunningServer, new_page: Callable[[], Page]
) -> None:
    user = unique("xhr")
    page = new_page()
    serve_page(page, server.url, XHR_PAGE % user)
    wait_until_subscribed(server, f"$key:{user}, 0, /chat")
    api = Client(server.url)
    sent: list[object] = ["<b>hi</b>", {"n": 1}, [1, 2], 3, ATTACK]
    for data in sent:
        api.event(f"{user}, 0, /chat", data)
    page.wait_for_function(f"window.got.length >= {len(sent)}")
    page.wait_for_timeout(200)
    assert page.evaluate("window.got") == sent


IFRAME_PAGE = """<!DOCTYPE html><meta charset="utf-8">
<script>window.got = []; function event(data) { window.got.push(data); }</script>
<iframe src="/chat|%s,0,iframe"></iframe>"""


def test_orbited_iframe_calls_the_parent_and_payloads_cannot_break_out(
    server: RunningServer, new_page: Callable[[], Page]
) -> None:
    user = unique("ifr")
    page = new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    serve_page(page, server.url, IFRAME_PAGE % user)
    wait_until_subscribed(server, f"$key:{user}, 0, /chat")
    api = Client(server.url)
    for data in (ATTACK, {"n": 2}):
        api.event(f"{user}, 0, /chat", data)
    page.wait_for_function("window.got.length >= 2")
    page.wait_for_timeout(300)
    assert page.evaluate("window.got") == [ATTACK, {"n": 2}]
    assert dialogs == []
    [frame] = [f for f in page.frames if f is not page.main_frame]
    # The prelude's script and one per event: nothing the payload injected.
    assert frame.evaluate("document.scripts.length") == 3


SSE_KEY_PAGE = """<!DOCTYPE html><meta charset="utf-8"><script>
window.got = [];
const es = new EventSource("/chat|%s,0,sse");
es.onmessage = (e) => window.got.push(JSON.parse(e.data));
</script>"""


def test_orbited_sse_url_in_eventsource(
    server: RunningServer, new_page: Callable[[], Page]
) -> None:
    user = unique("es")
    page = new_page()
    serve_page(page, server.url, SSE_KEY_PAGE % user)
    wait_until_subscribed(server, f"$key:{user}, 0, /chat")
    api = Client(server.url)
    for n in range(3):
        api.event(f"{user}, 0, /chat", {"n": n})
    page.wait_for_function("window.got.length >= 3")
    assert page.evaluate("window.got") == [{"n": n} for n in range(3)]


def test_orbited_iframe_opened_on_its_own_calls_nothing(
    server: RunningServer, new_page: Callable[[], Page]
) -> None:
    user = unique("top")
    page = new_page()
    # A link that names a dangerous callback, opened as a page rather than framed.
    page.goto(f"{server.url}/chat|{user},0,iframe?callback=eval", wait_until="commit")
    wait_until_subscribed(server, f"$key:{user}, 0, /chat")
    Client(server.url).event(f"{user}, 0, /chat", "document.title = 'pwned'")
    page.wait_for_function("document.scripts.length >= 2")  # the event's script arrived
    page.wait_for_timeout(200)
    assert page.title() != "pwned"
