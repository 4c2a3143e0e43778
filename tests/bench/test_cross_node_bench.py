"""``orbiter bench latency --nodes 2`` for real, at a tiny size: orbiter on one node and on
two nodes sharing a private ``redis-server``, behind one nginx, in one invocation.

Both rows must be produced, the two-node row's subscribers split evenly over the nodes
(so most deliveries cross from the publisher's node through Redis), and every
subscriber must get every publication once.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest

from orbiter.bench.command import main

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None, reason="needs gcc (scripts/system-packages installs it)"
)

SUBSCRIBERS, MESSAGES = 20, 15


def test_two_nodes_and_one_node_rows_and_every_publication_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "result.json"
    code = main(
        [
            "latency",
            "--nodes=2",
            f"--subscribers={SUBSCRIBERS}",
            f"--messages={MESSAGES}",
            "--rate=30",
            "--timeout=60",
            "--no-pin",
            f"--out={out}",
            f"--html={tmp_path / 'result.html'}",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    result = orjson.loads(out.read_bytes())
    assert [s["target"] for s in result["summaries"]] == ["orbiter 1 node", "orbiter 2 nodes"]
    assert "| orbiter 1 node |" in printed
    assert "| orbiter 2 nodes |" in printed
    for name, splits in (
        ("orbiter 1 node", [SUBSCRIBERS]),
        ("orbiter 2 nodes", [SUBSCRIBERS // 2] * 2),
    ):
        (run,) = result["runs"][name]
        assert (run["subscribers"], run["subscribers_failed"]) == (SUBSCRIBERS, 0), name
        assert run["published"] == run["publish_acked"] == MESSAGES, name
        assert run["expected_deliveries"] == SUBSCRIBERS * MESSAGES, name
        assert run["deliveries"] == SUBSCRIBERS * MESSAGES, name
        assert (run["lost"], run["subscribers_with_loss"]) == (0, 0), name
        assert (run["duplicates"], run["unexpected"]) == (0, 0), name
        assert sorted(run["split"].values()) == splits, (name, run["split"])
        # the publisher posts to one of the nodes (the first), the subscribers come
        # through nginx: on two nodes, half of them get every publication through Redis
        assert run["target"]["pub_url"] != run["target"]["url"], name
        assert str(urlsplit(run["target"]["pub_url"]).port) in run["split"], name
        assert run["latency_ms"]["p99"] > 0, name


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--nodes=2", "--spawn=aiohttp"], "--spawn orbiter only"),
        (["--nodes=0"], "--nodes must be at least 2"),
        (["--nodes=2", "--orbiter-arg=--engine=memory"], "needs a Redis engine"),
    ],
)
def test_nodes_refuses_what_it_cannot_compare(
    args: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["latency", *args]) == 2
    assert complaint in capsys.readouterr().err
