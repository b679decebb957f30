"""The handshake binds each node's claim to its enrolment: site name and role as enrolled with its key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.run_config import RunConfig
from server.enrolment import Enrolled, EnrolmentError, read_enrolment, write_enrolment
from server.handshake import handshake
from server.inprocess_grid import InProcessGrid
from tests.conftest import make_site


def test_a_node_claiming_another_sites_name_or_a_role_it_was_not_enrolled_with_is_refused_and_named(tmp_path: Path) -> None:
    grid = InProcessGrid(
        {"site-config": str(p)}
        for p in (
            make_site(tmp_path, "a", n=8),
            make_site(tmp_path / "impostor", "a", n=8, seed=1),  # enrolled as site_x, claims to be a
            make_site(tmp_path, "ext", role="train", n=8, seed=2),  # enrolled as external, claims to train
            make_site(tmp_path, "stray", n=8, seed=3),  # a node without an enrolment
        )
    )
    enrolment = write_enrolment(
        tmp_path / "enrolment.json", {100: Enrolled("a", "train"), 101: Enrolled("site_x", "train"), 102: Enrolled("ext", "external")}
    )
    # The impostor answers first, so without the enrolment the real site would be the duplicate.
    sites, excluded = handshake(grid, [101, 100, 102, 103], RunConfig(enrolment=str(enrolment)), timeout=60)
    assert {node: site.name for node, site in sites.items()} == {100: "a"}
    assert excluded == {
        "node-101": "node 101 is enrolled as site 'site_x' but claims to be site 'a'; refused",
        "node-102": "node 102 (site 'ext') is enrolled with role 'external' but claims role 'train'; refused",
        "node-103": "node 103 has no enrolment in this study (it claims to be site 'stray'); refused",
    }
    # Without an enrolment (simulation), the first to claim a name keeps it.
    sites, excluded = handshake(grid, [101, 100], RunConfig(), timeout=60)
    assert list(sites) == [101] and "already taken" in excluded["node-100"]


def test_an_unreadable_or_malformed_enrolment_is_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(EnrolmentError, match="missing.json"):
        read_enrolment(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"7": {"site": "../evil", "role": "train"}}))
    with pytest.raises(EnrolmentError, match="bad.json: entry '7'"):
        read_enrolment(bad)
    bad.write_text(json.dumps({"7": {"site": "a", "role": "admin"}}))
    with pytest.raises(EnrolmentError, match="entry '7'"):
        read_enrolment(bad)
    assert read_enrolment(write_enrolment(tmp_path / "ok.json", {7: Enrolled("a", "external")})) == {7: Enrolled("a", "external")}
