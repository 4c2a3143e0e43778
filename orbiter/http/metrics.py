"""``GET /metrics``: the node's numbers in Prometheus' text format, read when scraped.

Nothing is counted for Prometheus on the hot path: the collector reads, at
scrape time, what the node counts anyway (its ``counters``, PubSub's
``published`` and ``delivered``, the engine's sizes, the open sessions by
transport). The publish-to-write latency is sampled: PubSub calls
:meth:`LatencyHistogram.observe_since` for one channel hand-over in
:data:`orbiter.services.pubsub.LATENCY_SAMPLE` (the oldest publication of
that batch, from its ``time`` to its hand-over to the subscribers' connections,
which write it in the same loop iteration).

Every series has a ``node`` label (host:pid). On a clustered engine (Redis,
``--workers N``) the node that answers asks the others through the engine's
survey (``engine/redis_cluster.py``) and serves every node's series, so one
scrape of any node (or of the one port of ``--workers N``) sees the whole
cluster; ``orbiter_cluster_nodes`` and ``orbiter_cluster_nodes_answered`` say
whether every node answered in time.

Behind ``server.api_key`` (``X-API-Key`` or ``Authorization: apikey KEY``)
unless ``[metrics] public = true``; ``[metrics] enabled = false`` removes the
route and the sampling.
"""

from __future__ import annotations

import os
import socket
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from orbiter.http.api import ApiError, check_api_key
from orbiter.model import JSON
from orbiter.transports.app_keys import NODE
from orbiter.transports.errors import error_response
from orbiter.transports.stomp_mount import STOMP_BROKER

if TYPE_CHECKING:
    from orbiter.node import Node
    from orbiter.services.stomp.broker import StompBroker

METRICS_PATH = "/metrics"
#: Upper bounds (seconds) of the latency histogram's buckets (+Inf follows).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: This process's name in the ``node`` label.
NODE_NAME = f"{socket.gethostname()}:{os.getpid()}"


class LatencyHistogram:
    """Sampled publish-to-write latencies: a count per bucket and their sum (seconds)."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0

    def observe_since(self, published: float) -> None:
        """One sample: from ``published`` (a publication's wall-clock ``time``) to now."""
        seconds = max(0.0, time.time() - published)
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds


_HISTOGRAM = web.AppKey("metrics_latency", LatencyHistogram)


def node_sample(
    node: Node, stomp: StompBroker | None, latency: LatencyHistogram | None
) -> dict[str, Any]:
    """What this node counts now, as JSON (its answer to other nodes' surveys, and the
    admin dashboard's sample); ``latency`` None: not sampled (``[metrics] enabled = false``)."""
    transports = Counter(session.credentials.transport for session in node.sessions)
    if stomp is not None:
        transports.update(f"stomp-{session.transport}" for session in stomp.sessions)
    pubsub = node.pubsub
    return {
        "node": NODE_NAME,
        "connections": dict(transports),
        "pending": node.pending_connections,
        "published": pubsub.published,
        "delivered": pubsub.delivered,
        "subscribed_channels": pubsub.channel_count,
        "counters": dict(node.counters),
        "fallbacks": [[*pair, count] for pair, count in sorted(node.counters.fallbacks.items())],
        "engine": node.broker.stats(),
        "stomp_queue_bytes": 0 if stomp is None else stomp.queues.bytes,
        "latency": None
        if latency is None
        else {"counts": list(latency.counts), "sum": latency.sum},
        "time": time.time(),
    }


def app_sample(app: web.Application) -> dict[str, Any]:
    """:func:`node_sample` of the node ``app`` serves."""
    return node_sample(app[NODE], _stomp(app), app.get(_HISTOGRAM))


def _int(value: JSON) -> int:
    return value if isinstance(value, int) else 0


class _Samples(Collector):
    """The metric families of some nodes' samples (one scrape's worth)."""

    def __init__(self, samples: list[dict[str, Any]], nodes: int) -> None:
        self._samples = samples
        self._nodes = nodes

    def collect(self) -> Iterator[Metric]:
        label = ["node"]
        connections = GaugeMetricFamily(
            "orbiter_connections", "Open connections by transport", labels=["node", "transport"]
        )
        pending = GaugeMetricFamily(
            "orbiter_pending_connections",
            "Connections still sending their first head",
            labels=label,
        )
        published = CounterMetricFamily(
            "orbiter_publications", "Publications published through this node", labels=label
        )
        delivered = CounterMetricFamily(
            "orbiter_deliveries",
            "Publications due to subscribers here (one per subscriber when it arrived)",
            labels=label,
        )
        channels = GaugeMetricFamily(
            "orbiter_subscribed_channels", "Channels with a subscriber on the node", labels=label
        )
        limits = CounterMetricFamily(
            "orbiter_limit_hits",
            "Limit violations by limit (outgoing_buffer: slow consumers cut)",
            labels=["node", "limit"],
        )
        refusals = CounterMetricFamily(
            "orbiter_refusals", "Refusals and denials by reason", labels=["node", "reason"]
        )
        streams = GaugeMetricFamily("orbiter_streams", "Channel streams stored", labels=label)
        history = GaugeMetricFamily(
            "orbiter_history_bytes", "History counted against history.max_bytes", labels=label
        )
        engine_up = GaugeMetricFamily(
            "orbiter_engine_up", "1 while the engine is connected (Redis)", labels=label
        )
        engine_failures = CounterMetricFamily(
            "orbiter_engine_failures",
            "Engine operations that failed (Redis; SQLite commits)",
            labels=label,
        )
        stomp_bytes = GaugeMetricFamily(
            "orbiter_stomp_queue_bytes", "Bytes held in STOMP queues", labels=label
        )
        fallbacks = CounterMetricFamily(
            "orbiter_transport_fallbacks",
            "Connections made after other transports failed, as clients reported them,"
            " by the first transport tried and the one that worked",
            labels=["node", "from_transport", "to_transport"],
        )
        latency = HistogramMetricFamily(
            "orbiter_publish_latency_seconds",
            "Publication to hand-over to subscribers' connections, 1 channel batch in 16",
            labels=label,
        )
        for sample in self._samples:
            node = [str(sample.get("node", "?"))]
            for transport, count in sorted(sample.get("connections", {}).items()):
                connections.add_metric([*node, str(transport)], _int(count))
            pending.add_metric(node, _int(sample.get("pending")))
            published.add_metric(node, _int(sample.get("published")))
            delivered.add_metric(node, _int(sample.get("delivered")))
            channels.add_metric(node, _int(sample.get("subscribed_channels")))
            for name, count in sorted(sample.get("counters", {}).items()):
                if name.startswith("limit_"):
                    limits.add_metric([*node, name.removeprefix("limit_")], _int(count))
                else:
                    refusals.add_metric([*node, str(name)], _int(count))
            for first, to, count in sample.get("fallbacks", []):
                fallbacks.add_metric([*node, str(first), str(to)], _int(count))
            engine = sample.get("engine", {})
            if "channels" in engine:
                streams.add_metric(node, _int(engine["channels"]))
            if "history_bytes" in engine:
                history.add_metric(node, _int(engine["history_bytes"]))
            if "engine_up" in engine:
                engine_up.add_metric(node, _int(engine["engine_up"]))
            if "engine_failures" in engine:
                engine_failures.add_metric(node, _int(engine["engine_failures"]))
            stomp_bytes.add_metric(node, _int(sample.get("stomp_queue_bytes")))
            counts = (sample.get("latency") or {}).get("counts", [])
            if len(counts) == len(LATENCY_BUCKETS) + 1:
                buckets, total = [], 0
                for bound, count in zip((*LATENCY_BUCKETS, float("inf")), counts, strict=True):
                    total += _int(count)
                    buckets.append((_bound(bound), total))
                latency.add_metric(node, buckets, float(sample["latency"].get("sum", 0.0)))
        yield from (connections, pending, published, delivered, channels, limits, refusals)
        yield fallbacks
        yield from (streams, history, engine_up, engine_failures, stomp_bytes, latency)
        yield GaugeMetricFamily("orbiter_cluster_nodes", "Nodes alive", value=self._nodes)
        yield GaugeMetricFamily(
            "orbiter_cluster_nodes_answered",
            "Nodes whose numbers this scrape holds",
            value=len(self._samples),
        )


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def _stomp(app: web.Application) -> StompBroker | None:
    return app.get(STOMP_BROKER)


async def metrics(request: web.Request) -> web.Response:
    app = request.app
    node = app[NODE]
    if not node.config.metrics.public:
        try:
            headers = request.headers
            check_api_key(node, headers.get("X-API-Key"), headers.get("Authorization"))
        except ApiError as exc:
            return error_response(exc.status, exc.message)
    samples = [app_sample(app)]
    nodes = 1
    if node.broker.clustered:
        survey = await node.broker.survey("metrics", None)
        samples += [answer for answer in survey.answers if isinstance(answer, dict)]
        nodes = survey.nodes
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Samples(samples, nodes))
    return web.Response(
        body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def add_metrics_route(app: web.Application, node: Node) -> None:
    """``GET /metrics`` and the latency sampling, unless ``[metrics] enabled = false``."""
    if not node.config.metrics.enabled:
        return
    latency = app[_HISTOGRAM] = LatencyHistogram()
    node.pubsub.latency_probe = latency.observe_since
    node.broker.set_answerer("metrics", lambda _: node_sample(node, _stomp(app), latency))
    app.router.add_get(METRICS_PATH, metrics)
