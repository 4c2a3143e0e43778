"""Orbiter.Widget in Chromium: what the server may call on a widget, and what comes back.

A real ``orbiter serve`` mounting ``tests.live.sample:make`` at ``/sample``;
the page's widget is called by its element (``relay`` calls whatever widget
method the test names), over WebSocket and a polling fallback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import WAIT
from tests.support.server import RunningServer

CONFIG = """
[[live.element]]
path = "/sample"
factory = "tests.live.sample:make"
"""
WIDGET = "Orbiter.Widget.get(document.getElementById('orbiter-live'))"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    server = RunningServer(CONFIG)
    yield server
    server.stop()


def relay(page: Page, method: str, *args: Any) -> Any:
    return page.evaluate(
        f"([method, args]) => {WIDGET}.callRemote('relay', method, ...args)", [method, list(args)]
    )


@pytest.mark.parametrize("transport", ["websocket", "xhr-polling"])
def test_the_server_calls_the_widget_s_own_methods_only(
    server: RunningServer, new_page: Callable[[], Page], transport: str
) -> None:
    page = new_page()
    page.goto(f"{server.url}/sample?transports={transport}")
    page.wait_for_function(f"() => {WIDGET} && {WIDGET}.element !== null", timeout=WAIT)
    assert page.evaluate(f"{WIDGET}.client.transport") == transport

    assert relay(page, "answer", "q") == {"value": "q!"}
    assert relay(page, "later", 21) == {"value": 42}  # a promise is awaited
    assert relay(page, "boom") == {"error": ["RangeError", "too far"]}
    assert relay(page, "refuse") == {"error": ["Error", "no thanks"]}
    # Orbiter.Widget's own methods, private names, Object's: not the server's to call.
    for name in ["callRemote", "nodeByAttribute", "_secret", "constructor", "toString", "nope"]:
        kind, message = relay(page, name)["error"]
        assert kind == "TypeError", name
        assert "no method" in message, name

    # The browser's calls: a value, an exception with its type, a refused name.
    assert page.evaluate(f"{WIDGET}.callRemote('add', 2, 3)") == 5
    failed = page.evaluate(f"{WIDGET}.callRemote('fail').catch(e => [e.code, e.type, e.message])")
    assert failed == [113, "ValueError", "bad value"]
    hidden = page.evaluate(f"{WIDGET}.callRemote('hidden').catch(e => e.code)")
    assert hidden == 112
