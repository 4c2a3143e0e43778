"""The cluster section of ``GET /api/stats``: every node's share, asked through the engine.

Each node answers other nodes' ``stats`` surveys with :func:`node_share`
(its pid, connections and channels subscribed there); the node asked for
``/api/stats`` adds its own share. On an engine of one process there is no
cluster section.
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


def answer_surveys(node: Node) -> None:
    """Let ``node`` answer other nodes' ``stats`` surveys with its share."""
    node.broker.set_answerer("stats", lambda _: node_share(node))


async def cluster_section(node: Node) -> dict[str, Any]:
    """``{"cluster": {nodes, answered, connections, by_node}}`` on a clustered engine: the
    nodes alive, how many answered in time, their connections summed, and each one's share
    (this node's first); else nothing."""
    if not node.broker.clustered:
        return {}
    survey = await node.broker.survey("stats", None)
    shares = [node_share(node), *(a for a in survey.answers if isinstance(a, dict))]
    return {
        "cluster": {
            "nodes": survey.nodes,
            "answered": len(shares),
            "connections": sum(int(share.get("connections", 0)) for share in shares),
            "by_node": shares,
        }
    }
