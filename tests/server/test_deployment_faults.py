"""Deployment on loopback, the fault scenario: a site killed during a round comes back, a site sending NaN
updates is rejected, enrolled nodes claiming another site's name or a role they were not enrolled with are
refused (helpers and conventions: ``tests/server/deployment.py``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.server.deployment import (  # noqa: F401 (tiny_phantom: a fixture)
    FAULTS,
    QUICK,
    ROUND_TIMEOUT,
    SERVER_TIMEOUT,
    START_TIMEOUT,
    Deployment,
    cli,
    metrics,
    nodes,
    study,
    tiny_phantom,
)
from tests.server.processes import wait_until

# A class fixture runs whole federations (the first test's setup carries them): a longer bound than the suite's 900 s.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]


@dataclass
class FaultRun:
    """A run of 3 rounds in which site_b dies during round 1 and comes back, site_nan sends NaN updates, and two impostors connect.

    site_imp (enrolled to train) claims to be site_a; site_obs (enrolled as external) claims to train.
    """

    dep: Deployment
    run_dir: Path


class TestSiteFaults:
    """Sites that crash or send NaN during a run (a study of its own)."""

    @pytest.fixture(scope="class")
    def faults(self, tmp_path_factory: pytest.TempPathFactory, tiny_phantom: Path) -> Iterator[FaultRun]:
        """The faulty run, read by this class's tests."""
        with study(tmp_path_factory, "faults", tiny_phantom) as dep:
            dep.copy_site("site_nan", like="site_a")
            cli("axilla-study", "--study", str(dep.study), "add-site", "site_nan", "--role", "train")
            dep.copy_site("site_imp", like="site_a", claims="site_a")
            cli("axilla-study", "--study", str(dep.study), "add-site", "site_imp", "--role", "train")
            dep.copy_site("site_obs", like="site_b", role="train")
            cli("axilla-study", "--study", str(dep.study), "add-site", "site_obs", "--role", "external")
            dep.start_server(
                "server-faults", "--run-config", str(QUICK), "--set", ROUND_TIMEOUT, "--set", "min-train-sites=1",
                "--set", "num-rounds=3", "--set", "run-id=faults",
            )  # fmt: skip
            fault_path = os.pathsep.join(p for p in (str(FAULTS), os.environ.get("PYTHONPATH", "")) if p)
            dep.start_client("site_imp", light=True)  # connects first: without the enrolment check the real site_a would be the duplicate
            dep.start_client("site_obs", light=True)
            dep.start_client("site_nan", env={"PYTHONPATH": fault_path, "AXILLA_FAULT": "nan-update"})
            # site_a trains rounds 2 and 3 only once the gate is open, so round 3 starts after site_b is back.
            gate = dep.root / "site_b-is-back"
            dep.start_client("site_a", env={"PYTHONPATH": fault_path, "AXILLA_FAULT": "hold", "AXILLA_HOLD_UNTIL": str(gate)})
            for site in ("site_b", "site_ext"):
                dep.start_client(site)
            wait_until(lambda: "Receiving: train message" in dep.procs.log("site_b"), SERVER_TIMEOUT, "site_b to receive round 1")
            dep.procs.kill("site_b")  # the hospital's machine dies during the round ...
            run_dir = dep.root / "runs" / "faults"
            wait_until(lambda: any(m["site"] == "site_b" for m in metrics(run_dir)) if (run_dir / "metrics.jsonl").exists() else False, SERVER_TIMEOUT, "round 1 to close")
            dep.start_client("site_b", name="site_b-restarted")  # ... and comes back
            site_b = json.loads((dep.study / "state" / "registered.json").read_text())["site_b"]["node_id"]
            wait_until(lambda: nodes(dep).get(site_b, {}).get("status") == "online", START_TIMEOUT, "the restarted site_b to be online")
            gate.touch()
            yield FaultRun(dep, dep.finish("server-faults"))

    def test_a_killed_site_is_missing_for_its_round_and_a_nan_site_is_rejected(self, faults: FaultRun) -> None:
        dep, run_dir = faults.dep, faults.run_dir
        train = {(m["round"], m["site"]): m for m in metrics(run_dir) if m["split"] == "train"}
        assert train[(1, "site_b")]["status"] == "missing", train[(1, "site_b")]
        # Used again once it is back: round 3 started after it was online (round 2 may have started before).
        assert any(train.get((r, "site_b"), {}).get("status") == "ok" for r in (2, 3)), [train.get((r, "site_b")) for r in (2, 3)]
        for server_round in (1, 2, 3):
            assert train[(server_round, "site_a")]["status"] == "ok"
            assert train[(server_round, "site_nan")]["status"] == "missing"
            assert "update rejected" in train[(server_round, "site_nan")]["reason"] and "non-finite" in train[(server_round, "site_nan")]["reason"]
        assert "update of site site_nan rejected" in dep.procs.log("server-faults")
        report = json.loads((run_dir / "report.json").read_text())
        assert {(m["site"], m["round"]) for m in report.get("missing", [])} >= {("site_b", 1), ("site_nan", 1), ("site_nan", 3)}
        final = torch.load(run_dir / "checkpoints" / "final.pt")
        assert all(torch.isfinite(v.float()).all() for v in final.values())
        assert not math.isnan(next(r for r in report["classification"] if r["site"] == "site_ext")["auc"])

    def test_nodes_claiming_another_sites_name_or_an_unenrolled_role_are_refused_and_named(self, faults: FaultRun) -> None:
        dep, run_dir = faults.dep, faults.run_dir
        registered = json.loads((dep.study / "state" / "registered.json").read_text())
        imp, obs = registered["site_imp"]["node_id"], registered["site_obs"]["node_id"]
        excluded = json.loads((run_dir / "config.json").read_text())["excluded"]
        assert excluded[f"node-{imp}"] == f"node {imp} is enrolled as site 'site_imp' but claims to be site 'site_a'; refused"
        assert excluded[f"node-{obs}"] == f"node {obs} (site 'site_obs') is enrolled with role 'external' but claims role 'train'; refused"
        assert f"node {imp} is enrolled as site 'site_imp'" in dep.procs.log("server-faults")
        trained = {m["site"] for m in metrics(run_dir) if m["split"] == "train" and m["status"] == "ok"}
        assert "site_a" in trained and "site_obs" not in trained
        sites = json.loads((run_dir / "config.json").read_text())["sites"]
        assert sorted(s["name"] for s in sites) == ["site_a", "site_b", "site_ext", "site_nan"]
