"""The handshake: every node describes itself before any training."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from models.run_config import RunConfig
from protocol.messages import Describe, ProtocolError, SiteDescription
from server.enrolment import Enrolled, read_enrolment, refusal
from strategies.sites import NodeSite

logger = logging.getLogger("axilla.server")


def handshake(grid: Grid, node_ids: list[int], cfg: RunConfig, timeout: float) -> tuple[dict[int, NodeSite], dict[str, str]]:
    """Ask every node to describe itself; return the usable sites and the reason each other node was excluded.

    With the run config's ``enrolment`` (set by ``axilla-server``), a node is accepted only as the
    site and role its key was enrolled with.
    """
    enrolment = read_enrolment(Path(cfg.enrolment)) if cfg.enrolment else None
    request = Describe(run=cfg)
    messages = [Message(RecordDict(request.records()), dst_node_id=n, message_type=request.kind) for n in node_ids]
    replies = list(grid.send_and_receive(messages, timeout=timeout))
    return sites_from_replies(replies, node_ids, enrolment)


def sites_from_replies(
    replies: list[Message], node_ids: list[int], enrolment: Mapping[int, Enrolled] | None = None
) -> tuple[dict[int, NodeSite], dict[str, str]]:
    """The usable sites among handshake replies (matching their enrolment, when given), and why each other node is excluded."""
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
        try:
            info = SiteDescription.from_content(reply.content)
        except (ProtocolError, KeyError, ValueError) as err:
            excluded[f"node-{node}"] = f"malformed handshake reply: {err}"
            continue
        refused = refusal(enrolment, node, info.site, info.role) if enrolment is not None else None
        if refused:
            excluded[f"node-{node}"] = refused
            logger.error("node %s excluded at handshake: %s", node, refused)
            continue
        if any(s.name == info.site for s in sites.values()):
            excluded[f"node-{node}"] = f"site name '{info.site}' already taken by another node"
            logger.error("node %s excluded: duplicate site name %s", node, info.site)
            continue
        sites[node] = NodeSite(node, info.site, info.role, info.counts, info.fingerprint, info.version, info.dp)
        logger.info("site %s (%s): %s", info.site, info.role, info.counts)
    for node in node_ids:
        if node not in answered:
            excluded[f"node-{node}"] = "no answer to the handshake"
    return sites, excluded


def with_roles(sites: Mapping[int, NodeSite], roles: Mapping[int, str]) -> dict[int, NodeSite]:
    """The same sites with the roles of another federation (the baselines'); nodes without a role are left out."""
    return {node: replace(site, role=roles[node]) for node, site in sites.items() if node in roles}
