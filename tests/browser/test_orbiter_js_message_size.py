"""orbiter.js's own message-size check matches the server's default (1 MiB, issue 18).

It refused a publish over 64 KiB before sending it, the server's old
default, though the server takes up to ``limits.max_message_size``.
"""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, Route

from tests.support.server import RunningServer

PAGE = """<!DOCTYPE html><meta charset="utf-8"><script src="/static/orbiter.js"></script>
<script>
window.client = new Orbiter.Client(location.origin);
window.got = [];
client.subscribe("chat:size", (data) => window.got.push(data.length));
</script>"""


def test_a_publish_up_to_the_servers_limit_is_sent(
    server: RunningServer, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    url = f"{server.url}/__test_page__"

    def fulfill(route: Route) -> None:
        route.fulfill(status=200, content_type="text/html; charset=utf-8", body=PAGE)

    page.route(url, fulfill)
    page.goto(url)
    page.evaluate("client.publish('chat:size', 'x'.repeat(200000))")
    page.wait_for_function("window.got.length === 1")
    assert page.evaluate("window.got") == [200_000]
    refused = page.evaluate(
        "client.publish('chat:size', 'x'.repeat(1100000)).then(() => 'sent', (e) => e.code)"
    )
    assert refused == "too_big"
