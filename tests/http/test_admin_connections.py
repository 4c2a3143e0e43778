"""``GET /api/admin/connections`` on a clustered engine, without a network: this node's rows
and the other nodes' answers to the ``admin_connections`` survey merged, the longest-open
first, each row naming its node, and bounded at ``MAX_CONNECTIONS`` however many nodes
answer (or answer badly)."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from orbiter.config.settings import Config
from orbiter.engine.base import Broker, Survey
from orbiter.engine.memory import MemoryBroker
from orbiter.http.admin_api import MAX_CONNECTIONS, add_admin_api, connections
from orbiter.http.metrics import NODE_NAME
from orbiter.logs import EVENTS_LOGGER
from orbiter.model import JSON
from orbiter.node import Node
from orbiter.transports.app_keys import NODE
from tests.support.wrapped_broker import WrappedBroker

KEY = "admin-key"


class ClusterBroker(WrappedBroker):
    """A memory engine that says it is clustered, and whose surveys get ``answers`` from
    ``nodes - 1`` other nodes (and records what was asked)."""

    clustered = True

    def __init__(self, nodes: int, answers: list[JSON]) -> None:
        super().__init__()
        self.nodes = nodes
        self.answers = answers
        self.asked: list[tuple[str, JSON]] = []

    async def survey(self, kind: str, argument: JSON) -> Survey:
        self.asked.append((kind, argument))
        return Survey(self.nodes, list(self.answers))


def _node(broker: Broker, sessions: int) -> tuple[Node, web.Application]:
    node = Node(replace(Config(), api_key=KEY), broker=broker)
    for i in range(sessions):
        node.new_session(f"10.0.{i // 250}.{i % 250}")
    app = web.Application()
    app[NODE] = node
    add_admin_api(app, node)
    return node, app


async def _list(app: web.Application) -> dict[str, Any]:
    request = make_mocked_request(
        "GET", "/api/admin/connections", headers={"X-API-Key": KEY}, app=app
    )
    answer = await connections(request)
    assert answer.status == 200
    assert isinstance(answer.body, bytes)
    result: dict[str, Any] = orjson.loads(answer.body)
    return result


def _row(client: str, age: float, node: str = "other:7") -> dict[str, Any]:
    return {
        "client": client,
        "user": None,
        "transport": "websocket",
        "ip": "192.0.2.1",
        "age": age,
        "buffer": 0,
        "channels": 0,
        "node": node,
    }


@pytest.fixture(autouse=True)
def _ages(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, EVENTS_LOGGER)  # sessions' ages are kept at INFO


async def test_every_node_s_rows_are_merged_longest_open_first() -> None:
    others = [_row(f"b{i}", 100.0 + i, "other:7") for i in range(3)]
    broker = ClusterBroker(3, [{"total": 3, "rows": others}])
    _, app = _node(broker, 2)
    answer = await _list(app)
    assert broker.asked == [("admin_connections", None)]
    assert (answer["node"], answer["nodes"], answer["answered"]) == (NODE_NAME, 3, 2)
    assert answer["total"] == 5
    rows = answer["connections"]
    assert [row["client"] for row in rows[:3]] == ["b2", "b1", "b0"]
    assert [row["node"] for row in rows] == ["other:7"] * 3 + [NODE_NAME] * 2
    assert {row["ip"] for row in rows[3:]} == {"10.0.0.0", "10.0.0.1"}


async def test_the_list_is_bounded_however_many_nodes_answer() -> None:
    """Two nodes each answer MAX_CONNECTIONS rows (one more than it should): 1,000 rows
    are listed, the longest-open of all; the totals still count every connection."""
    first = [_row(f"b{i}", 10.0 + 2 * i, "b:1") for i in range(MAX_CONNECTIONS + 1)]
    second = [_row(f"c{i}", 11.0 + 2 * i, "c:1") for i in range(MAX_CONNECTIONS)]
    broker = ClusterBroker(3, [{"total": 4000, "rows": first}, {"total": 1000, "rows": second}])
    _, app = _node(broker, 3)
    answer = await _list(app)
    rows = answer["connections"]
    assert len(rows) == MAX_CONNECTIONS
    assert answer["total"] == 5003
    ages = [row["age"] for row in rows]
    assert ages == sorted(ages, reverse=True)
    kept = sorted((r["age"] for r in first[:MAX_CONNECTIONS] + second), reverse=True)
    assert ages == kept[:MAX_CONNECTIONS]


async def test_bad_answers_are_left_out() -> None:
    """An answer that is no share (an older node without the answerer says None) counts
    neither as answered nor in the rows."""
    broker = ClusterBroker(
        5, [None, "x", {"rows": "none"}, {"total": 1, "rows": [_row("b0", 3.0), "junk"]}]
    )
    _, app = _node(broker, 1)
    answer = await _list(app)
    assert (answer["nodes"], answer["answered"], answer["total"]) == (5, 2, 2)
    assert answer["connections"][0]["client"] == "b0"
    assert len(answer["connections"]) == 2


async def test_a_node_answers_with_its_longest_open_rows_only() -> None:
    """The survey's answerer: this node's total and at most MAX_CONNECTIONS rows."""
    broker = ClusterBroker(2, [])
    node, _ = _node(broker, MAX_CONNECTIONS + 5)
    share = broker.answer("admin_connections", None)
    assert isinstance(share, dict)
    assert share["total"] == MAX_CONNECTIONS + 5
    rows = share["rows"]
    assert isinstance(rows, list)
    assert len(rows) == MAX_CONNECTIONS
    assert all(isinstance(row, dict) and row["node"] == NODE_NAME for row in rows)
    assert len(node.sessions) == MAX_CONNECTIONS + 5


async def test_one_process_lists_its_own() -> None:
    _, app = _node(MemoryBroker(), 2)
    answer = await _list(app)
    assert (answer["nodes"], answer["answered"], answer["total"]) == (1, 1, 2)
    assert [row["node"] for row in answer["connections"]] == [NODE_NAME] * 2
