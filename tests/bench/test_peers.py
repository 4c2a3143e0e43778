"""The bench's peer servers measured for real on small N: uvloop-raw, python-socketio, Pushpin.

uvloop-raw needs only what the tests install. The others run only where
their server is installed (python-socketio is in the ``bench`` extra,
Pushpin is a Debian package); ``.ci/run`` installs neither, so where they
are missing these tests are skipped and say why (a CI machine that has
Pushpin runs its test, as one did).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace

import pytest

from orbiter.bench.runner import Target, run
from orbiter.bench.scenarios import Scenario
from orbiter.bench.spawn import _wait_listening, spawn
from orbiter.ports import free_port

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None, reason="needs gcc (scripts/system-packages installs it)"
)

SMALL = Scenario("small", subscribers=20, channels=2, messages=50, timeout=30, settle=1.0)

needs_socketio = pytest.mark.skipif(
    importlib.util.find_spec("socketio") is None,
    reason="python-socketio is not installed (pip install -e '.[bench]')",
)


def socketio_peer(ping_interval: float) -> Iterator[Target]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orbiter.bench.peers.socketio_broadcast",
            str(port),
            str(ping_interval),
        ]
    )
    try:
        _wait_listening(port, None)
        yield Target("socketio", "socketio", f"http://127.0.0.1:{port}", proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_raw_uvloop_floor_delivers_every_publication_once() -> None:
    server = spawn("uvloop-raw", None)
    try:
        result = run(SMALL, server.target, progress=None)
    finally:
        server.stop()
    assert result["subscribers_failed"] == 0
    assert result["published"] == result["publish_acked"] == 50
    assert result["deliveries"] == result["expected_deliveries"] == 20 * 25
    assert result["lost"] == result["duplicates"] == result["unexpected"] == 0


@needs_socketio
def test_socketio_rooms_get_their_share_of_the_publications() -> None:
    # Two rooms: publication seq goes to room seq % 2, 25 each; 10 clients per room.
    for target in socketio_peer(25.0):
        result = run(SMALL, target, progress=None)
    assert result["subscribers_failed"] == 0
    assert result["published"] == result["publish_acked"] == 50
    assert result["deliveries"] == result["expected_deliveries"] == 20 * 25
    assert result["lost"] == result["duplicates"] == result["unexpected"] == 0
    assert result["server"]["cpu_s"] >= 0


@needs_socketio
def test_socketio_pings_are_answered() -> None:
    # Pings every 0.5 s, each to be answered within 0.5 s, while 30 publications
    # arrive over 3 s: a client that did not answer would be dropped and lose them.
    scenario = replace(SMALL, messages=30, rate=10.0)
    for target in socketio_peer(0.5):
        result = run(scenario, target, progress=None)
    assert result["subscribers_failed"] == result["subscribers_closed"] == 0
    assert result["deliveries"] == result["expected_deliveries"] == 20 * 15
    assert result["lost"] == 0


@pytest.mark.skipif(
    shutil.which("pushpin") is None, reason="Pushpin is not installed (apt-get install pushpin)"
)
def test_pushpin_subscribers_get_what_its_control_api_publishes() -> None:
    server = spawn("pushpin", None)
    try:
        assert server.target.pub_url is not None
        assert server.target.pub_url != server.target.url
        result = run(SMALL, server.target, progress=None)
    finally:
        server.stop()
    assert result["subscribers_failed"] == 0
    assert result["published"] == result["publish_acked"] == 50
    # Its control API closes the connection after each answer.
    assert result["publisher_connects"] == 50
    assert result["publish_errors"] == result["publisher_reconnects"] == 0
    assert result["deliveries"] == result["expected_deliveries"] == 20 * 25
    assert result["lost"] == result["duplicates"] == result["unexpected"] == 0
    assert result["server"]["processes"] >= 4  # the runner, condure, zurl, proxy, handler
