"""The STOMP bench driver runs end to end against a spawned orbiter (small, not timed)."""

from __future__ import annotations

import pytest

from orbiter.bench import stomp


def test_the_stomp_bench_counts_every_delivery(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--subscribers", "5", "--messages", "20", "--producers", "2", "--consumers", "2"]
    assert stomp.main([*args, "--queue-messages", "100", "--no-rabbitmq"]) == 0
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines()[2:]]
    assert [(r[1].strip(), r[2].strip(), r[3].strip()) for r in rows] == [
        ("orbiter", "fanout", "100"),
        ("orbiter", "queue", "100"),
    ]
