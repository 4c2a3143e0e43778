"""The node's count of connections still sending their first request head: limits with
one spare, a trusted proxy counted in the total only, and refusals logged once per
interval."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest

from orbiter.config.settings import config_from_dict
from orbiter.node import Node


def _node(clock: Callable[[], float] = time.monotonic, **server: object) -> Node:
    raw: dict[str, object] = {"limits": {"max_connections": 4, "max_connections_per_ip": 2}}
    if server:
        raw["server"] = server
    return Node(config_from_dict(raw), clock=clock)


async def test_pending_heads_count_per_address_with_one_spare() -> None:
    node = _node()
    assert [node.open_pending("10.0.0.1") for _ in range(3)] == [None, None, None]
    refusal = node.open_pending("10.0.0.1")
    assert refusal == "too many connections from 10.0.0.1 (limits.max_connections_per_ip = 2)"
    assert node.connection_count == 3
    assert node.counters["limit_connections_per_ip"] == 1
    node.close_pending("10.0.0.1")
    assert node.open_pending("10.0.0.1") is None


async def test_pending_heads_count_in_the_total_and_leave_it() -> None:
    node = _node()
    for peer in ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"):
        assert node.open_pending(peer) is None
    refusal = node.open_pending("10.0.0.6")
    assert refusal is not None
    assert "limits.max_connections)" in refusal
    for peer in ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"):
        node.close_pending(peer)
    assert node.connection_count == 0
    assert node.pending_connections == 0
    # A head that became a session is counted once, as the session.
    assert node.open_pending("10.0.0.1") is None
    node.close_pending("10.0.0.1")
    node.new_session("10.0.0.1")
    assert node.connection_count == 1


async def test_a_trusted_proxy_is_limited_by_the_total_only() -> None:
    node = _node(trusted_proxies=["10.0.0.9"])
    assert [node.open_pending("10.0.0.9") for _ in range(5)] == [None] * 5
    assert node.open_pending("10.0.0.9") is not None
    assert node.counters["limit_connections"] == 1


async def test_refusals_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    node = _node(clock=lambda: now[0])
    caplog.set_level(logging.WARNING, "orbiter.node")
    for _ in range(50):
        node.refused("limit_x", "refused %s", "a")
    node.refused("limit_y", "other %s", "b")
    assert [r.getMessage() for r in caplog.records] == ["refused a", "other b"]
    now[0] += 9.9  # a line every 10 s: not yet
    node.refused("limit_x", "refused %s", "a")
    assert len(caplog.records) == 2
    now[0] += 0.1
    node.refused("limit_x", "refused %s", "c")
    assert caplog.records[-1].getMessage() == (
        "refused c (and 50 more like it since the last such line)"
    )
    assert node.counters["limit_x"] == 52
