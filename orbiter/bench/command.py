"""``orbiter bench PRESET``: run a scenario against orbiter and peers, side by side.

Spawned servers (``--spawn orbiter,aiohttp,...``) run one at a time pinned
to ``--server-cpu``, the load generator pinned to ``--loadgen-cpu``;
servers already running are named with ``--target
name=X,flavor=F,url=http://127.0.0.1:PORT,pid=PID``. Each target runs
``--repeat`` times, interleaved (target A, B, A, B, ...), so that noise
from other load on the machine falls on all of them alike; medians are
reported.

``--nodes N`` runs orbiter twice per repeat: one node, then N nodes sharing one
Redis, both behind the same nginx (round robin: the subscribers split over
the nodes) with the publisher on the first node (:mod:`orbiter.bench.nodes`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from orbiter.bench import report
from orbiter.bench.flavors import FLAVORS, FlavorError
from orbiter.bench.nodes import PrivateRedis, SpawnedNodes, engine_arg, spawn_nodes
from orbiter.bench.runner import BenchError, Target, run
from orbiter.bench.scenarios import PRESETS, TRANSPORTS, Scenario, preset
from orbiter.bench.spawn import SPAWNABLE, Spawned, Unavailable, spawn

DESCRIPTION = (
    "Run a benchmark preset against orbiter and peer servers, side by side: a C load "
    "generator (needs gcc) holds the subscribers and publishes; spawned servers run one at "
    "a time, each --repeat times, interleaved; medians are reported (docs/benchmarks.md)."
)

NODES_EXAMPLE = (
    "cross-node latency: orbiter bench latency --nodes 2 runs orbiter on one node, then on\n"
    "two nodes sharing a private redis-server (or --orbiter-arg=--engine=redis://...), the\n"
    "subscribers split by an nginx in front of both rows, the publisher on the first node."
)

_TRANSPORT_NAMES = {"ws": "WebSocket", "sse": "SSE", "longpoll": "long-poll", "sockjs": "SockJS"}
_ROUTE_NAMES = {
    "http": "POST /api/publish",
    "batch": "batched POST /api/publish",
    "native": "native WebSocket publish",
}


def describe(scenario: Scenario) -> str:
    """One line saying what a preset does, from its own numbers."""
    subscribers = f"{scenario.subscribers:,} {_TRANSPORT_NAMES[scenario.transport]} subscribers"
    channels = "1 channel" if scenario.channels == 1 else f"{scenario.channels:,} channels"
    if scenario.churn:
        return f"{subscribers} on {channels}, reconnecting for {scenario.churn:g} s"
    if not scenario.messages:
        return f"{subscribers} on {channels}, idle (memory per connection)"
    pace = f"{scenario.rate:g}/s" if scenario.rate else "as fast as accepted"
    per = f", {scenario.batch} per request" if scenario.batch > 1 else ""
    route = _ROUTE_NAMES[scenario.route]
    return (
        f"{subscribers} on {channels}; {scenario.messages:,} publications by {route}{per}, {pace}"
    )


def parser() -> argparse.ArgumentParser:
    presets = "\n".join(f"  {name:<22}{describe(PRESETS[name])}" for name in sorted(PRESETS))
    p = argparse.ArgumentParser(
        prog="orbiter bench",
        description=DESCRIPTION,
        epilog=f"presets:\n{presets}\n\n{NODES_EXAMPLE}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("preset", choices=sorted(PRESETS), help="one of the presets below")
    p.add_argument(
        "--spawn",
        default=None,
        help=f"comma-separated servers to start and compare: {', '.join(SPAWNABLE)} "
        "(default: orbiter, unless --target is given)",
    )
    p.add_argument(
        "--target",
        action="append",
        default=[],
        help="a running server: name=N,flavor=F,url=http://H:P[,pid=PID][,pub=http://H:P] "
        "(pub: where to publish, if not url)",
    )
    p.add_argument("--server-cpu", default="0", help="core for spawned servers (taskset)")
    p.add_argument("--loadgen-cpu", type=int, default=1, help="core for the load generator")
    p.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    p.add_argument("--repeat", type=int, default=1, help="runs per target (medians reported)")
    p.add_argument("--out", default="bench-result.json", help="JSON result file")
    p.add_argument("--html", default="bench-result.html", help="HTML plot file")
    p.add_argument("--orbiter-arg", action="append", default=[], help="extra `orbiter serve` arg")
    p.add_argument("--baseline", help="source tree that --spawn orbiter-before runs")
    p.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="N > 1: orbiter on 1 node and on N nodes sharing one Redis (the --engine of "
        "--orbiter-arg, else a private redis-server), side by side, the subscribers split "
        "over the nodes by an nginx in front of both rows, the publisher on the first node "
        "(cross-node latency: orbiter bench latency --nodes 2)",
    )
    p.add_argument(
        "--write-delay",
        type=float,
        default=0.005,
        help="session.write_delay of spawned orbiters (default 0.005 s)",
    )
    for name, kind in (
        ("subscribers", int),
        ("channels", int),
        ("messages", int),
        ("rate", float),
        ("depth", int),
        ("batch", int),
        ("payload", int),
        ("timeout", float),
        ("churn", float),
    ):
        p.add_argument(f"--{name}", type=kind, help=f"override the preset's {name}")
    p.add_argument("--route", choices=["http", "batch", "native"])
    p.add_argument("--transport", choices=TRANSPORTS)
    return p


def parse_target(text: str) -> Target:
    fields = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
    try:
        flavor = fields["flavor"]
        url = fields["url"]
    except KeyError as exc:
        raise BenchError(f"--target {text!r} needs {exc.args[0]}=") from None
    if flavor not in FLAVORS:
        raise BenchError(f"--target flavor must be one of {', '.join(FLAVORS)}")
    pid = int(fields["pid"]) if "pid" in fields else None
    return Target(fields.get("name", flavor), flavor, url, pid, fields.get("pub"))


def _node_rows(nodes: int, spawn_names: list[str], targets: list[Target]) -> list[tuple[str, str]]:
    """The rows of a ``--nodes`` run: orbiter on one node, then on ``nodes``."""
    if nodes < 2:
        raise BenchError(f"--nodes must be at least 2 (or 1, the default), not {nodes}")
    if targets or spawn_names != ["orbiter"]:
        raise BenchError("--nodes compares orbiter with itself: --spawn orbiter only, no --target")
    return [("nodes", "orbiter 1 node"), ("nodes", f"orbiter {nodes} nodes")]


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    overrides = {
        k: getattr(args, k)
        for k in (
            "subscribers",
            "channels",
            "messages",
            "rate",
            "depth",
            "batch",
            "payload",
            "timeout",
            "churn",
            "route",
            "transport",
        )
    }
    try:
        scenario = preset(args.preset, **overrides)
    except ValueError as exc:
        print(f"orbiter bench: {exc}", file=sys.stderr)
        return 2
    try:
        targets = [parse_target(t) for t in args.target]
    except BenchError as exc:
        print(f"orbiter bench: {exc}", file=sys.stderr)
        return 2
    spawn_names = args.spawn.split(",") if args.spawn else ([] if targets else ["orbiter"])
    server_cpu = None if args.no_pin else args.server_cpu
    loadgen_cpu = None if args.no_pin else args.loadgen_cpu
    orbiter_args = tuple(args.orbiter_arg)
    order = [("spawn", n) for n in spawn_names] + [("target", t.name) for t in targets]
    redis: PrivateRedis | None = None
    if args.nodes != 1:
        try:
            order = _node_rows(args.nodes, spawn_names, targets)
            if engine_arg(orbiter_args) is None:
                redis = PrivateRedis(server_cpu)
        except (BenchError, Unavailable) as exc:
            print(f"orbiter bench: {exc}", file=sys.stderr)
            return 2
    runs: dict[str, list[dict[str, Any]]] = {}
    skipped: dict[str, str] = {}
    try:
        for _ in range(args.repeat):
            for kind, name in order:
                if name in skipped:
                    continue
                spawned: Spawned | SpawnedNodes | None = None
                try:
                    if kind == "nodes":
                        count = int(name.split()[1])
                        spawned = spawn_nodes(
                            count,
                            name,
                            server_cpu,
                            orbiter_args,
                            redis.url if redis is not None else "",
                            args.write_delay,
                            (redis.process.pid,) if redis is not None else (),
                        )
                        target = spawned.target
                    elif kind == "spawn":
                        spawned = spawn(
                            name, server_cpu, orbiter_args, args.baseline, args.write_delay
                        )
                        target = spawned.target
                    else:
                        target = next(t for t in targets if t.name == name)
                    result = run(scenario, target, loadgen_cpu=loadgen_cpu)
                    if isinstance(spawned, SpawnedNodes):
                        result["split"] = spawned.split(result["subscribers"])
                        print(f"{name}: connections per node {result['split']}", file=sys.stderr)
                except (Unavailable, FlavorError) as exc:
                    skipped[name] = str(exc)
                    print(f"orbiter bench: skipping {name}: {exc}", file=sys.stderr)
                    continue
                except BenchError as exc:
                    print(f"orbiter bench: {name}: {exc}", file=sys.stderr)
                    return 1
                finally:
                    if spawned is not None:
                        spawned.stop()
                runs.setdefault(name, []).append(result)
                s = report.summarize([result])
                print(report.markdown_table([s]).splitlines()[-1], file=sys.stderr)
    finally:
        if redis is not None:
            redis.stop()
    summaries = [report.summarize(r) for r in runs.values()]
    table = report.markdown_table(summaries)
    print(f"\n{scenario.name}: {asdict(scenario)}\n\n{table}")
    for name, rows in runs.items():
        if "split" in rows[0]:
            print(f"- {name}: connections per node (port: count): {rows[0]['split']}")
    for name, why in skipped.items():
        print(f"- {name}: not measured: {why}")
    Path(args.out).write_bytes(
        orjson.dumps(
            {
                "scenario": asdict(scenario),
                "summaries": summaries,
                "skipped": skipped,
                "runs": runs,
            },
            option=orjson.OPT_INDENT_2,
        )
    )
    Path(args.html).write_text(
        report.html_plot(f"orbiter bench {scenario.name}", [r for rs in runs.values() for r in rs])
    )
    print(f"\nwrote {args.out} and {args.html}")
    return 0
