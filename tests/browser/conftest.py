"""Chromium for browser tests: Debian's binary driven by Playwright (never a downloaded one)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.support.relay import Relay
from tests.support.server import RunningServer
from tests.support.tcp_servers import ThreadedEcho

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: A WebSocket that fails the way one does behind a proxy that blocks it.
BLOCK_WEBSOCKET = """
window.WebSocket = class {
  constructor(url) {
    window.__blockedWebSockets = (window.__blockedWebSockets || 0) + 1;
    this.readyState = 0;
    setTimeout(() => {
      this.readyState = 3;
      if (this.onerror) this.onerror({});
      if (this.onclose) this.onclose({code: 1006, reason: ""});
    }, 20);
  }
  send() { throw new Error("WebSocket is blocked"); }
  close() {}
};
"""

#: Milliseconds: generous, for a slow 2-core machine.
WAIT = 15_000


# Module scope: the sync Playwright API runs an event loop in this thread while
# it is open, which asyncio tests in other modules must not meet.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Callable[[], Page]]:
    """Open pages, each in its own browser context (its own cookies and storage)."""
    contexts = []
    errors: list[str] = []

    def open_page() -> Page:
        context = browser.new_context()
        context.set_default_timeout(WAIT)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        return page

    yield open_page
    for context in contexts:
        with contextlib.suppress(Exception):
            context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def relay(server: RunningServer) -> Iterator[Relay]:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    relay = Relay(host, int(port))
    yield relay
    relay.close()


@pytest.fixture(scope="module")
def echo() -> Iterator[ThreadedEcho]:
    """A TCP echo backend for pages that reach it through the TCP proxy."""
    server = ThreadedEcho()
    yield server
    server.stop()
