"""The seed-API STOMPClient over TCPSocket (transport "tcp", through /tcp) to real brokers:
orbiter's embedded STOMP listener, and RabbitMQ's STOMP plugin on a private RabbitMQ node
(tests/support/rabbitmq_server.py; scripts/system-packages installs rabbitmq-server)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page

from orbiter.ports import free_port
from tests.support.page_server import PageServer
from tests.support.rabbitmq_server import RabbitMQServer
from tests.support.server import RunningServer

STOMP_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><script src="@ORBITER@/static/orbiter.js"></script></head>
<body><script>
window.chat = { messages: [], connected: false, closeCode: null, errors: [] };
window.startStomp = function (host, port, options) {
  const stomp = new STOMPClient(Object.assign({ transport: "tcp", url: "@ORBITER@" }, options));
  stomp.onconnectedframe = () => { stomp.subscribe("/topic/orbiter-tcp", { receipt: "sub" }); };
  stomp.onreceiptframe = (frame) => {
    if (frame.headers["receipt-id"] === "sub") chat.connected = true;
  };
  stomp.onmessageframe = (frame) => chat.messages.push(frame.body);
  stomp.onerrorframe = (frame) => chat.errors.push(frame.body);
  stomp.onclose = (code) => { chat.closeCode = code; };
  stomp.connect(host, port, options.login, options.passcode);
  window.stomp = stomp;
};
</script></body></html>
"""


@pytest.fixture(scope="module")
def stomp_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def stomp_server(stomp_port: int, rabbitmq_server: RabbitMQServer) -> Iterator[RunningServer]:
    srv = RunningServer(
        f'[stomp]\nlisten = "127.0.0.1:{stomp_port}"\n\n'
        f'[[tcp.access]]\nto = "127.0.0.1:{stomp_port}"\n\n'
        f'[[tcp.access]]\nto = "127.0.0.1:{rabbitmq_server.stomp_port}"\n'
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def pages(stomp_server: RunningServer) -> Iterator[PageServer]:
    server = PageServer({"/stomp.html": STOMP_PAGE.replace("@ORBITER@", stomp_server.url)})
    yield server
    server.close()


def chat_between_two_pages(
    new_page: Callable[[], Page], pages: PageServer, port: int, options: str
) -> None:
    ann, bob = new_page(), new_page()
    for page in (ann, bob):
        page.goto(pages.url + "/stomp.html")
        page.evaluate(f"startStomp('127.0.0.1', {port}, {options})")
    for page in (ann, bob):
        page.wait_for_function("chat.connected || chat.errors.length")
        assert page.evaluate("chat.errors") == []
    ann.evaluate("stomp.send('hello from ann ✓', '/topic/orbiter-tcp')")
    bob.evaluate("stomp.send('hello from bob', '/topic/orbiter-tcp')")
    for page in (ann, bob):
        page.wait_for_function("chat.messages.length >= 2")
        assert sorted(page.evaluate("chat.messages")) == ["hello from ann ✓", "hello from bob"]


def test_embedded_broker_over_tcp_socket(
    new_page: Callable[[], Page], pages: PageServer, stomp_port: int
) -> None:
    chat_between_two_pages(new_page, pages, stomp_port, "{}")


def test_rabbitmq_stomp_over_tcp_socket(
    new_page: Callable[[], Page], pages: PageServer, rabbitmq_server: RabbitMQServer
) -> None:
    port = rabbitmq_server.stomp_port
    options = "{login: 'guest', passcode: 'guest', vhost: '/'}"
    chat_between_two_pages(new_page, pages, port, options)
