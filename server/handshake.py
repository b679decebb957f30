"""The handshake: every node describes itself before any training."""

from __future__ import annotations

import logging

from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from strategies.sites import NodeSite

logger = logging.getLogger("axilla.server")


def handshake(grid: Grid, node_ids: list[int], run_config: dict, timeout: float) -> tuple[dict[int, NodeSite], dict[str, str]]:
    """Ask every node to describe itself; return the usable sites and the reason each other node was excluded."""
    messages = [
        Message(RecordDict({"config": ConfigRecord(run_config)}), dst_node_id=n, message_type=MessageType.QUERY)
        for n in node_ids
    ]
    replies = list(grid.send_and_receive(messages, timeout=timeout))
    sites: dict[int, NodeSite] = {}
    excluded: dict[str, str] = {}
    answered = set()
    for reply in replies:
        node = reply.metadata.src_node_id
        answered.add(node)
        if reply.has_error():
            excluded[f"node-{node}"] = str(reply.error.reason)
            logger.error("node %s excluded at handshake: %s", node, reply.error.reason)
            continue
        info = reply.content["site"]
        name = str(info["site"])
        if any(s.name == name for s in sites.values()):
            excluded[f"node-{node}"] = f"site name '{name}' already taken by another node"
            logger.error("node %s excluded: duplicate site name %s", node, name)
            continue
        counts = {
            split: {lbl: int(info.get(f"n-{split}-{tag}", 0)) for lbl, tag in ((0, "neg"), (1, "pos"))}
            for split in ("train", "val", "test")
        }
        sites[node] = NodeSite(node, name, str(info["role"]), counts, str(info["fingerprint"]), str(info["version"]))
        logger.info("site %s (%s): %s", name, info["role"], counts)
    for node in node_ids:
        if node not in answered:
            excluded[f"node-{node}"] = "no answer to the handshake"
    return sites, excluded
