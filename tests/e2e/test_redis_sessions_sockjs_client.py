"""The unmodified npm ``sockjs-client`` in node, through a round-robin nginx over three nodes.

No affinity rule: nginx sends each request of a session to the next node in
turn (its access log shows the nodes taking its sends and receives), and the
session still works, relayed through Redis to the node that holds it
(``transports/sockjs/remote.py``). The client comes from
``tests/js/node_modules`` (``npm ci`` in ``tests/js``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.nginx_balancer import NGINX, NginxBalancer
from tests.support.npm import npm_file
from tests.support.redis_server import RedisServer
from tests.support.server import RunningServer

NODE = shutil.which("node") or "node"

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt install nginx)")

#: Sends 40 messages to the echo service, a few at a time, and prints what came back.
SCENARIO = """
const SockJS = require(process.argv[1]);
const [url, transport] = [process.argv[2], process.argv[3]];
const sock = new SockJS(url, null, {transports: [transport]});
const got = [];
let sent = 0;
let opened = null;
const timer = setTimeout(() => finish("timeout"), 40000);
function finish(error) {
  clearTimeout(timer);
  console.log(JSON.stringify({error, got, transport: opened}));
  process.exit(0);
}
function sendSome() {
  for (let i = 0; i < 3 && sent < 40; i++) sock.send("m" + sent++);
  if (sent < 40) setTimeout(sendSome, 20);
}
sock.onopen = () => { opened = sock.transport; sendSome(); };
sock.onmessage = (e) => {
  got.push(e.data);
  if (got.length === 40) { sock.close(); finish(null); }
};
sock.onclose = (e) => { if (got.length < 40) finish("closed " + e.code + " " + e.reason); };
"""


@pytest.fixture(scope="module")
def balancer() -> Iterator[NginxBalancer]:
    redis = RedisServer()
    args = ("--engine", redis.url, "--sockjs-test-services")
    nodes = [RunningServer(args=args) for _ in range(3)]
    front = NginxBalancer([node.url.removeprefix("http://") for node in nodes])
    yield front
    front.close()
    for node in nodes:
        node.stop()
    redis.close()


def run_scenario(url: str, transport: str) -> dict[str, Any]:
    client = npm_file("sockjs-client")
    done = subprocess.run(
        [NODE, "-e", SCENARIO, str(client), url, transport],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("transport", ["xhr-polling", "xhr-streaming"])
def test_sockjs_client_through_round_robin_gets_every_echo_once_in_order(
    balancer: NginxBalancer, transport: str
) -> None:
    before = len(balancer.logged())
    result = run_scenario(balancer.url + "/sockjs/echo", transport)
    assert result["error"] is None, result
    assert result["transport"] == transport
    assert result["got"] == [f"m{i}" for i in range(40)]
    requests = balancer.logged()[before:]
    sends = {backend for uri, backend in requests if uri.endswith("/xhr_send")}
    receives = {backend for uri, backend in requests if uri.endswith(("/xhr", "/xhr_streaming"))}
    # Every node took sends of the session; with polling, receives too (one streaming
    # response may carry all 40 short echoes).
    assert len(sends) == 3, requests
    if transport == "xhr-polling":
        assert len(receives) == 3, requests
    assert receives, requests


def test_sockjs_client_on_two_workers_of_one_port() -> None:
    """``--workers 2``: the kernel spreads the client's connections over both processes."""
    server = RunningServer(args=("--workers", "2", "--sockjs-test-services"))
    try:
        for transport in ("xhr-polling", "xhr-streaming"):
            result = run_scenario(server.url + "/sockjs/echo", transport)
            assert result["error"] is None, result
            assert result["got"] == [f"m{i}" for i in range(40)]
    finally:
        server.stop()
