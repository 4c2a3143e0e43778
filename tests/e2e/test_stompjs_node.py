"""The unmodified npm ``@stomp/stompjs`` in node, over STOMP's WebSocket endpoint ``/stomp``.

The client comes from ``tests/js/node_modules`` (``npm ci`` in ``tests/js``);
node 20 gets its WebSocket from ``--experimental-websocket``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.npm import npm_file
from tests.support.server import RunningServer
from tests.support.stomp_helpers import start_stomp_server

HERE = Path(__file__).resolve().parent
STOMPJS = "@stomp/stompjs/esm6/index.js"
SCENARIO = (HERE / "stompjs_scenario.js").read_text()
#: The broker's heart-beats for the scenario: it beats every 0.3 s, wants one every 0.5 s.
STOMP_TOML = "heartbeat_send = 0.3\nheartbeat_receive = 0.5\n"

NODE = shutil.which("node") or "node"


@pytest.fixture(scope="module")
def broker() -> Iterator[RunningServer]:
    srv, _ = start_stomp_server(stomp_toml=STOMP_TOML)
    yield srv
    srv.stop()


def check_scenario(log: dict[str, Any], topic: str, subprotocol: str = "v12.stomp") -> None:
    """What the scenario must have seen, in node and in the browser alike."""
    assert log["errors"] == []
    assert log["version"] == "1.2"
    assert log["subprotocol"] == subprotocol
    assert log["heartBeat"] == "300,500"
    assert log["httpStatus"] == 200
    assert log["topic"] == [
        {"body": '{"from":"stompjs"}', "type": "application/json", "offset": "1"},
        {"body": "from http", "type": "text/plain;charset=utf-8", "offset": "2"},
    ]
    bodies = sorted((m["body"], m["redelivered"] or "") for m in log["queue"])
    assert bodies == [("first", ""), ("in tx", ""), ("nack me", ""), ("nack me", "true")]
    assert log["connectedAfterIdle"] is True


def run_node(srv: RunningServer, topic: str, queue: str) -> dict[str, Any]:
    args = {
        "wsUrl": srv.url.replace("http://", "ws://") + "/stomp",
        "httpUrl": srv.url,
        "topic": topic,
        "queue": queue,
    }
    # scripts/test installs it; a missing client is a failure, not a skip.
    stompjs = npm_file(STOMPJS)
    program = (
        f"import {{ Client }} from {json.dumps(stompjs.as_uri())};\n"
        f"const scenario = {SCENARIO};\n"
        f"const log = await scenario({{Client, ...{json.dumps(args)}}});\n"
        "console.log(JSON.stringify(log));\n"
        "process.exit(0);\n"
    )
    done = subprocess.run(
        [NODE, "--experimental-websocket", "--no-warnings", "--input-type=module", "-e", program],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_stompjs_in_node(broker: RunningServer) -> None:
    topic = "/topic/chat:stompjs-node"
    check_scenario(run_node(broker, topic, "/queue/stompjs-node"), topic)
