"""``client.rpc()`` in Chromium through orbiter's RPC proxy to a real app server.

The app is told who calls from the connection token and the browser's own
cookie, over WebSocket and over a SockJS fallback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page

from tests.support.keys import SECRET, token
from tests.support.rpc_app import RpcApp
from tests.support.server import RunningServer


@pytest.fixture(scope="module")
def app() -> Iterator[RpcApp]:
    app = RpcApp()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def server(app: RpcApp) -> Iterator[RunningServer]:
    server = RunningServer(f'[auth]\nsecret = "{SECRET}"\n\n[rpc]\nurl = "{app.url}"\n')
    yield server
    server.stop()


@pytest.mark.parametrize("transport", ["websocket", "xhr-streaming"])
def test_rpc_reaches_the_app_with_the_caller_s_identity(
    server: RunningServer, app: RpcApp, new_page: Callable[[], Page], transport: str
) -> None:
    page = new_page()
    page.context.add_cookies([{"name": "session", "value": "c00kie", "url": server.url}])
    page.goto(server.url + "/api/stats")
    page.add_script_tag(url="/static/orbiter.js")
    answer = page.evaluate(
        """async ([token, transport]) => {
          const client = new Orbiter.Client({ token, transports: [transport] });
          await new Promise((resolve) => client.on("connect", resolve));
          const who = await client.rpc("whoami", { user: "mallory" });
          const denied = await client.rpc("deny").catch((e) => [e.code, e.type, e.message]);
          const echoed = await client.rpc("echo", [1, "two"]);
          return { who, denied, echoed, client: client.clientId, used: client.transport };
        }""",
        [token("carol"), transport],
    )
    assert answer["used"] == transport
    assert answer["who"] == {"user": "carol", "client": answer["client"], "cookie": "c00kie"}
    assert answer["denied"] == [113, "Forbidden", "not you"]
    assert answer["echoed"] == [1, "two"]
