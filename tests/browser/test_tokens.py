"""orbiter.js with connection tokens in Chromium: a token function that renews the
token before it expires on the open connection (no reconnect), and a bad token
that makes the client stop instead of reconnecting."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page

from orbiter.client import Client
from tests.browser.conftest import WAIT
from tests.support.keys import SECRET, token
from tests.support.server import RunningServer

CONFIG = f"""
[server]
api_key = "k"

[auth]
secret = "{SECRET}"

[[channel]]
match = "chat:*"
client_publish = true
"""

#: Seconds each token lives; orbiter.js renews at 3/4 of that.
TOKEN_TTL = 4


@pytest.fixture(scope="module")
def authed() -> Iterator[RunningServer]:
    srv = RunningServer(CONFIG)
    yield srv
    srv.stop()


def blank_page(page: Page, srv: RunningServer) -> None:
    """A page of the server's origin with orbiter.js loaded: the chat demo, whose own
    client (without a token) is refused and stops; the tests make their own."""
    page.goto(srv.url + "/")
    page.wait_for_function("window.chatClient && window.chatClient.state === 'disconnected'")
    page.wait_for_function("!!window.Orbiter")


@pytest.mark.parametrize("transport", ["websocket", "xhr-streaming"])
def test_token_function_refreshes_before_expiry_without_reconnecting(
    authed: RunningServer, new_page: Callable[[], Page], transport: str
) -> None:
    page = new_page()
    issued: list[float] = []

    def fetch_token() -> str:
        issued.append(time.time())
        return token("ann", ttl=TOKEN_TTL)

    page.expose_function("fetchToken", fetch_token)
    blank_page(page, authed)
    page.evaluate(
        """(transport) => {
      window.log = { connect: 0, disconnect: [], refresh: 0, errors: [], got: [] };
      const options = { token: () => window.fetchToken(), transports: [transport] };
      const c = (window.client = new Orbiter.Client(options));
      c.on("connect", () => window.log.connect++);
      c.on("disconnect", (d) => window.log.disconnect.push(d.code));
      c.on("refresh", () => window.log.refresh++);
      c.on("error", (d) => window.log.errors.push(String(d.error && d.error.message)));
      c.subscribe("chat:tokens", (data) => window.log.got.push(data));
    }""",
        transport,
    )
    page.wait_for_function("window.log.connect === 1", timeout=WAIT)
    # Two renewals (at 3 s and 6 s): the first token has expired by the end.
    page.wait_for_function("window.log.refresh >= 2", timeout=WAIT)
    assert page.evaluate("window.client.transport") == transport
    Client(authed.url, api_key="k").publish("chat:tokens", "after the refreshes")
    page.wait_for_function("window.log.got.length === 1", timeout=WAIT)
    log = page.evaluate("window.log")
    assert log["connect"] == 1
    assert log["disconnect"] == []
    assert log["errors"] == []
    assert log["got"] == ["after the refreshes"]
    assert len(issued) >= 3
    assert time.time() - issued[0] > TOKEN_TTL
    page.evaluate("window.client.disconnect()")


def test_a_bad_token_stops_the_client_instead_of_reconnecting(
    authed: RunningServer, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    blank_page(page, authed)
    bad = token("ann", key="not-the-servers-secret-0123456789abcdef")
    page.evaluate(
        """(bad) => {
      window.log = { disconnect: [], errors: [] };
      const c = (window.client = new Orbiter.Client({ token: bad, minReconnectDelay: 10 }));
      c.on("disconnect", (d) => window.log.disconnect.push([d.code, d.reconnect]));
      c.on("error", (d) => window.log.errors.push(d.error.code));
    }""",
        bad,
    )
    page.wait_for_function("window.log.disconnect.length === 1", timeout=WAIT)
    page.wait_for_timeout(500)
    log = page.evaluate("window.log")
    assert log["disconnect"] == [[3502, False]]
    assert log["errors"] == [101]
    assert page.evaluate("window.client.state") == "disconnected"


def test_orbited_connect_with_a_token_gets_its_keys_events(
    authed: RunningServer, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    blank_page(page, authed)
    page.evaluate(
        """(t) => {
      window.got = [];
      Orbited.settings.token = t;
      window.orbitedClient = Orbited.connect((data) => window.got.push(data), "ann", "/inbox");
    }""",
        token("ann"),
    )
    page.wait_for_function("window.orbitedClient.state === 'connected'", timeout=WAIT)
    Client(authed.url, api_key="k").event(["ann, 0, /inbox"], "<b>for ann</b>")
    page.wait_for_function("window.got.length === 1", timeout=WAIT)
    assert page.evaluate("window.got") == ["<b>for ann</b>"]


def test_a_reconnect_after_the_token_expired_fetches_a_fresh_one_first(
    authed: RunningServer, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    issued: list[float] = []

    def fetch_token() -> str:
        issued.append(time.time())
        return token("ann", ttl=2)

    page.expose_function("fetchToken", fetch_token)
    blank_page(page, authed)
    page.evaluate(
        """() => {
      window.log = { connect: 0, errors: [] };
      const c = (window.client = new Orbiter.Client({ token: () => window.fetchToken() }));
      c.on("connect", () => window.log.connect++);
      c.on("error", (d) => window.log.errors.push(d.error.code));
    }"""
    )
    page.wait_for_function("window.log.connect === 1", timeout=WAIT)
    page.evaluate("window.client.disconnect()")
    page.wait_for_timeout(2500)  # the token has expired meanwhile
    page.evaluate("window.client.connect()")
    page.wait_for_function("window.log.connect === 2", timeout=WAIT)
    assert page.evaluate("window.log.errors") == []  # no refused connect with the old token
    assert len(issued) == 2
