"""Which site and role each SuperLink node was enrolled as: written by the coordinator, checked at the handshake.

Flower authenticates every SuperNode by its enrolled key and gives the key one node id, so a node
id stands for the key's enrolment. The coordinator writes ``state/enrolment.json`` (node id ->
site and role, from ``axilla-study add-site``) before it submits a run and names the file in the
run config's ``enrolment`` key; the ServerApp then accepts a node's handshake only when the site
name and role it claims are the ones its key was enrolled with.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from protocol.messages import SITE_ROLES, valid_site_name


class EnrolmentError(ValueError):
    """The enrolment file is missing or malformed."""


@dataclass(frozen=True)
class Enrolled:
    """One node's enrolment."""

    site: str
    role: str


def write_enrolment(path: Path, nodes: Mapping[int, Enrolled]) -> Path:
    """Write node id -> enrolment as JSON (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({str(n): {"site": e.site, "role": e.role} for n, e in sorted(nodes.items())}, indent=2), encoding="utf-8")
    tmp.replace(path)
    return path


def read_enrolment(path: Path) -> dict[int, Enrolled]:
    """Read an enrolment file, or fail naming it and the bad entry."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise EnrolmentError(f"run config 'enrolment' = {str(path)!r}: cannot read the enrolment ({err})") from err
    if not isinstance(raw, dict):
        raise EnrolmentError(f"{path}: expected an object of node id -> {{site, role}}")
    nodes: dict[int, Enrolled] = {}
    for key, entry in raw.items():
        site, role = (entry.get("site"), entry.get("role")) if isinstance(entry, dict) else (None, None)
        if not key.isdigit() or not isinstance(site, str) or not valid_site_name(site) or role not in SITE_ROLES:
            raise EnrolmentError(f"{path}: entry {key!r} is not a node id with a valid site name and role")
        nodes[int(key)] = Enrolled(site, str(role))
    return nodes


def refusal(enrolment: Mapping[int, Enrolled], node: int, site: str, role: str) -> str | None:
    """Why node ``node`` claiming ``site`` and ``role`` is refused, or None when the claim matches its enrolment."""
    enrolled = enrolment.get(node)
    if enrolled is None:
        return f"node {node} has no enrolment in this study (it claims to be site '{site}'); refused"
    if enrolled.site != site:
        return f"node {node} is enrolled as site '{enrolled.site}' but claims to be site '{site}'; refused"
    if enrolled.role != role:
        return f"node {node} (site '{site}') is enrolled with role '{enrolled.role}' but claims role '{role}'; refused"
    return None
