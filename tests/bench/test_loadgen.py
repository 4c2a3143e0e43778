"""``orbiter bench`` against real servers, small N: counts, loss, duplicates, latency.

The load generator (C, built with gcc) runs for real against a real
``orbiter serve`` and against a deliberately faulty broadcast server, and
the tests check that what it reports is what happened.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from orbiter.bench.report import html_plot, markdown_table, summarize
from orbiter.bench.runner import Target, run
from orbiter.bench.scenarios import Scenario
from orbiter.bench.spawn import Spawned, _wait_listening, spawn
from orbiter.ports import free_port

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None, reason="needs gcc (scripts/system-packages installs it)"
)

SMALL = Scenario("small", subscribers=20, channels=1, messages=50, timeout=30, settle=1.0)


@pytest.fixture(scope="module")
def orbiter_server() -> Iterator[Spawned]:
    server = spawn("orbiter", None)
    yield server
    server.stop()


def faulty(*args: str, flavor: str = "broadcast") -> Iterator[Target]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.faulty_peer", str(port), *args],
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        _wait_listening(port, None)
        yield Target("faulty", flavor, f"http://127.0.0.1:{port}", proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


def test_fanout_counts_every_delivery_once(orbiter_server: Spawned) -> None:
    result = run(SMALL, orbiter_server.target, progress=None)
    assert result["subscribers"] == 20
    assert result["subscribers_failed"] == 0
    assert result["published"] == result["publish_acked"] == 50
    assert result["deliveries"] == result["expected_deliveries"] == 1000
    assert result["lost"] == result["duplicates"] == result["unexpected"] == 0
    lat = result["latency_ms"]
    assert 0 <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert sum(b[2] for b in result["histogram"]) == 1000
    assert sum(w[1] for w in result["windows"]) == 1000
    server = result["server"]
    assert server["cpu_s"] >= 0
    assert 0 <= server["cpu_user_s"] <= server["cpu_s"]
    # 20 connections may fit in memory the server already had: RSS is
    # measured, its growth may be 0.
    assert server["rss_base_kib"] > 0
    assert server["rss_ready_kib"] > 0
    assert server["rss_per_subscriber_kib"] >= 0


@pytest.mark.parametrize(
    "changes",
    [
        {"route": "batch", "batch": 7},
        {"route": "native", "batch": 3},
        {"transport": "sse"},
        {"transport": "longpoll"},
        {"transport": "sockjs"},
        {"rate": 200.0},
    ],
    ids=["batch", "native", "sse", "longpoll", "sockjs", "rate"],
)
def test_routes_and_transports(orbiter_server: Spawned, changes: dict[str, object]) -> None:
    result = run(replace(SMALL, **changes), orbiter_server.target, progress=None)  # type: ignore[arg-type]
    assert result["subscribers_failed"] == 0
    assert result["deliveries"] == 1000
    assert result["lost"] == result["duplicates"] == 0
    if "rate" in changes:
        assert result["keeps_up"] is True
        assert result["offered_deliveries_per_s"] == 200 * 20


def test_many_channels_expect_each_subscribers_share(orbiter_server: Spawned) -> None:
    scenario = replace(SMALL, subscribers=12, channels=8, messages=35)
    result = run(scenario, orbiter_server.target, progress=None)
    # 35 publications over 8 channels: channels 0-2 get 5, the rest 4; subscribers
    # 8-11 share channels 0-3 again.
    assert result["expected_deliveries"] == 3 * 5 + 5 * 4 + 3 * 5 + 1 * 4
    assert result["deliveries"] == result["expected_deliveries"]
    assert result["lost"] == 0


def test_lost_and_duplicated_messages_are_noticed() -> None:
    for target in faulty("--drop", "5", "--duplicate", "7"):
        result = run(SMALL, target, progress=None)
    # Subscriber 0 misses publications 5, 10, ..., 50 (10 of them) and gets
    # 7, 14, ..., 49 twice (7 of them; 35 is dropped before it can be doubled).
    assert result["lost"] == 10
    assert result["subscribers_with_loss"] == 1
    assert result["duplicates"] == 6
    assert result["deliveries"] == 1000 - 10
    assert markdown_table([summarize([result])]).count("\n") == 2


def test_latency_is_measured_from_the_payload_timestamp() -> None:
    for target in faulty("--delay", "0.2"):
        result = run(SMALL, target, progress=None)
    assert result["lost"] == 0
    assert result["latency_ms"]["p50"] >= 200


def test_rate_mode_counts_latency_from_the_scheduled_time() -> None:
    # 20 publications scheduled 10 ms apart; the server takes 50 ms to accept
    # each, so the last is sent about 1 s after its slot: latency counts that.
    scenario = replace(SMALL, messages=20, rate=100.0, depth=1)
    for target in faulty("--publish-delay", "0.05"):
        result = run(scenario, target, progress=None)
    assert result["lost"] == 0
    assert result["latency_ms"]["max"] >= 600
    assert result["keeps_up"] is False


def test_a_run_waits_for_a_server_still_delivering() -> None:
    # Every publish is accepted at once; publication n arrives n * 50 ms
    # later, so deliveries go on for 2.5 s after the last publish, longer
    # than settle (1 s): the run waits while they keep coming.
    for target in faulty("--pace", "0.05"):
        result = run(SMALL, target, progress=None)
    assert result["deliveries"] == 1000
    assert result["lost"] == 0
    assert result["latency_ms"]["max"] >= 2000


def test_a_publisher_told_connection_close_connects_again() -> None:
    # One request at a time: each answer says Connection: close, the next
    # publication goes on a new connection, nothing is lost.
    for target in faulty("--close"):
        result = run(replace(SMALL, depth=1), target, progress=None)
    assert result["published"] == result["publish_acked"] == 50
    assert result["publisher_connects"] == 50
    assert result["publish_errors"] == result["publisher_reconnects"] == 0
    assert result["deliveries"] == 1000
    # Pipelined (4 in flight): what was sent behind a closing answer is lost, and counted.
    for target in faulty("--close"):
        result = run(SMALL, target, progress=None)
    assert result["publish_errors"] > 0
    assert result["publish_acked"] + result["publish_errors"] == result["published"] == 50
    assert result["deliveries"] == 20 * result["publish_acked"]


def test_subscribers_joined_late_are_probed_before_the_run_starts() -> None:
    # The server joins each subscriber 0.5 s after its 101 and says nothing. Published
    # to at once (the broadcast flavor), the first publications reach nobody ...
    scenario = replace(SMALL, depth=1)
    for target in faulty("--subscribe-after", "0.5", "--close"):
        result = run(scenario, target, progress=None)
    assert result["lost"] > 0
    # ... the pushpin flavor probes every channel until each subscriber has heard a
    # probe, and only then starts: nothing is lost and the probes count nowhere.
    for target in faulty("--subscribe-after", "0.5", "--close", flavor="pushpin"):
        result = run(scenario, target, progress=None)
    assert result["subscribers_failed"] == 0
    assert result["published"] == result["publish_acked"] == 50
    assert result["publisher_connects"] == 50
    assert result["publish_errors"] == result["publisher_reconnects"] == 0
    assert result["deliveries"] == result["expected_deliveries"] == 1000
    assert result["lost"] == result["duplicates"] == result["unexpected"] == 0


def test_html_plot_is_self_contained(orbiter_server: Spawned) -> None:
    result = run(replace(SMALL, messages=10), orbiter_server.target, progress=None)
    page = html_plot("t", [result])
    assert page.count("<svg") == 2
    assert "<script" not in page
    assert "polyline" in page


def test_churn_counts_connect_subscribe_disconnect_cycles(orbiter_server: Spawned) -> None:
    scenario = replace(SMALL, subscribers=5, channels=2, messages=0, churn=1.0)
    result = run(scenario, orbiter_server.target, progress=None)
    assert result["churn_failures"] == 0
    assert result["churn_cycles"] >= 5  # each subscriber at least once round in a second
    assert result["connects_per_s"] == result["churn_cycles"] / 1.0
    assert result["server"]["cpu_ms_per_connect"] is not None


@pytest.mark.parametrize(
    "faults", [(), ("--drop", "5", "--duplicate", "7")], ids=["exact", "faulty"]
)
def test_long_polls_count_what_the_answers_hold(faults: tuple[str, ...]) -> None:
    # The faulty peer answers orbiter's long polls; its first polling
    # connection misses publications 5, 10, ..., 50 and gets 7, 14, ..., 49
    # twice (35 is dropped), as the WebSocket case above.
    scenario = replace(SMALL, transport="longpoll")
    for target in faulty(*faults):
        result = run(scenario, replace(target, flavor="orbiter"), progress=None)
    assert result["subscribers_failed"] == result["subscribers_closed"] == 0
    assert result["poll_errors"] == result["polls_unrecoverable"] == 0
    if faults:
        assert (result["lost"], result["subscribers_with_loss"], result["duplicates"]) == (10, 1, 6)
        assert result["deliveries"] == 1000 - 10
    else:
        assert result["deliveries"] == 1000
        assert result["lost"] == result["duplicates"] == 0
    # One position poll each, then at least one held poll per answer seen.
    assert result["polls"] >= 20 + 50


def test_long_polls_against_orbiter_resume_from_each_answers_position(
    orbiter_server: Spawned,
) -> None:
    scenario = replace(SMALL, transport="longpoll", messages=200, rate=400.0)
    result = run(scenario, orbiter_server.target, progress=None)
    assert result["subscribers_failed"] == 0
    assert result["deliveries"] == result["expected_deliveries"] == 20 * 200
    assert result["lost"] == result["duplicates"] == result["unexpected"] == 0
    assert result["poll_errors"] == result["polls_unrecoverable"] == 0
    # Publications arriving while a subscriber re-polls come in one answer:
    # fewer polls than publications per subscriber are possible, never more
    # than one per publication plus the position poll and the last held one.
    assert 20 * 2 <= result["polls"] <= 20 * (200 + 2)


def test_a_refused_long_poll_is_reported() -> None:
    scenario = replace(SMALL, transport="longpoll", subscribers=5, messages=5, timeout=5)
    for target in faulty("--refuse-polls"):
        result = run(scenario, replace(target, flavor="orbiter"), progress=None)
    assert result["subscribers_failed"] == 5
    assert result["poll_errors"] == 5
    assert result["deliveries"] == 0
    assert any("503" in line for line in result["loadgen_errors"])


def test_sockjs_heartbeats_and_pings_are_ignored() -> None:
    # Heartbeat frames ("h") and WebSocket pings every 50 ms while 20
    # publications arrive over a second: counted exactly, nothing else.
    server = spawn("orbiter", None, orbiter_config="\n[sockjs]\nheartbeat = 0.05\n")
    try:
        scenario = replace(SMALL, transport="sockjs", messages=20, rate=20.0)
        result = run(scenario, server.target, progress=None)
    finally:
        server.stop()
    assert result["subscribers_failed"] == 0
    assert result["deliveries"] == 20 * 20
    assert result["lost"] == result["duplicates"] == result["unexpected"] == 0


@pytest.mark.timeout(60)
def test_many_complaints_from_the_load_generator_do_not_stall_the_run() -> None:
    # 3,000 refused connections are ~120 KiB of complaints: more than a pipe holds.
    target = Target("nobody", "broadcast", f"http://127.0.0.1:{free_port()}", None)
    scenario = replace(SMALL, subscribers=3_000, messages=0, timeout=10, settle=0.5)
    result = run(scenario, target, progress=None)
    assert result["subscribers_failed"] == 3_000
    assert result["loadgen_errors"], "the complaints are reported"


@pytest.mark.parametrize(
    ("name", "data_file"), [("orbiter-sqlite", True), ("orbiter-memory", False)]
)
def test_the_engine_named_by_the_spawned_name_wins_over_orbiter_args(
    name: str, data_file: bool
) -> None:
    """``orbiter-sqlite`` runs the SQLite engine and ``orbiter-memory`` the memory engine,
    whatever engine ``--orbiter-arg`` gives every orbiter of the run (a Redis, say)."""
    server = spawn(name, None, orbiter_args=("--engine", "memory" if data_file else "sqlite"))
    try:
        files = list(Path(server.tmp.name).glob("orbiter-data/*.sqlite3"))
        assert bool(files) is data_file, files
    finally:
        server.stop()
