"""Every node's share of an answer, asked through the engine; the cluster section of stats.

:func:`every_share` is how a route answers for the whole cluster: this node's
share and each other node's answer to a survey of the same kind
(``engine/redis_cluster.py``), the nodes alive counted; on an engine of one
process, this node's share alone. ``GET /api/stats`` uses it for its cluster
section (each node answers ``stats`` surveys with :func:`node_share`: its pid,
connections and channels subscribed there), ``GET /api/admin/connections``
for its rows, the admin actions for the count of connections each node acted on.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from orbiter.model import JSON

if TYPE_CHECKING:
    from orbiter.node import Node


def node_share(node: Node) -> dict[str, JSON]:
    """What this node counts of the cluster's totals."""
    return {
        "pid": os.getpid(),
        "connections": node.connection_count,
        "subscribed_channels": node.pubsub.channel_count,
    }


async def every_share(
    node: Node, kind: str, own: JSON, argument: JSON = None
) -> tuple[int, list[JSON]]:
    """The nodes alive, and ``own`` (this node's share) followed by the answer of every
    other node that answered a ``kind`` survey (of ``argument``) in time, on a clustered
    engine."""
    if not node.broker.clustered:
        return 1, [own]
    survey = await node.broker.survey(kind, argument)
    return survey.nodes, [own, *survey.answers]


def answer_surveys(node: Node) -> None:
    """Let ``node`` answer other nodes' ``stats`` surveys with its share."""
    node.broker.set_answerer("stats", lambda _: node_share(node))


async def cluster_section(node: Node) -> dict[str, Any]:
    """``{"cluster": {nodes, answered, connections, by_node}}`` on a clustered engine: the
    nodes alive, how many answered in time, their connections summed, and each one's share
    (this node's first); else nothing."""
    if not node.broker.clustered:
        return {}
    nodes, answers = await every_share(node, "stats", node_share(node))
    shares = [answer for answer in answers if isinstance(answer, dict)]
    return {
        "cluster": {
            "nodes": nodes,
            "answered": len(shares),
            "connections": sum(int(share.get("connections", 0)) for share in shares),
            "by_node": shares,
        }
    }
