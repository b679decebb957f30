"""Personalisation in the in-process federation: fine-tuning and Ditto at the training sites; nothing but scalar metrics leaves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from client.privacy_guard import audit_path
from protocol.messages import EVALUATE, TRAIN
from server.federation import run_federation
from tests.conftest import make_site
from tests.server.test_federation import LoopbackGrid, _cfg


def _audit(tmp_path: Path, site: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in audit_path(tmp_path / site / "output").read_text().splitlines()]


def _personal_keys(entry: dict[str, Any]) -> list[str]:
    values = entry.get("records", {}).get("metrics", {}).get("values", {})
    return [k for k in values if k.startswith(("personal/", "vs:global/"))]


@pytest.mark.parametrize("how", ["finetune", "ditto"])
def test_training_sites_test_a_personalised_model_that_never_leaves_and_the_external_site_keeps_the_global_one(tmp_path: Path, how: str) -> None:
    grid = LoopbackGrid([make_site(tmp_path, "a", n=24, seed=1), make_site(tmp_path, "b", n=20, seed=2), make_site(tmp_path, "ext", role="external", n=16, seed=3)])
    run_dir = run_federation(grid, _cfg(tmp_path, personalise=how, personalise_epochs="1,2", baselines=False))  # type: ignore[arg-type]
    report = json.loads((run_dir / "report.json").read_text())
    rows = {r["site"]: r for r in report["personalisation"]}
    assert {s: r["status"] for s, r in rows.items()} == {"a": "ok", "b": "ok", "ext": "global only"}
    for site in ("a", "b"):
        assert 0.0 <= rows[site]["personal_auc"] <= 1.0 and "global_auc" in rows[site] and "delong_p" in rows[site]
        assert ("epochs" in rows[site]) == (how == "finetune") and rows[site].get("epochs", 1) in (1, 2)
    assert "## Personalisation (test split)" in (run_dir / "report.md").read_text() and 'id="personalisation"' in (run_dir / "report.html").read_text()
    assert "personal/" not in (run_dir / "metrics.jsonl").read_text()  # the global model's rows hold only its own metrics
    # What left each site: no evaluation reply holds arrays; personal metrics only in the training sites' final test reply.
    asked = [m for m in grid.sent if m.metadata.message_type == EVALUATE and m.content.config_records["config"].get("personalise")]
    assert {m.content.config_records["config"]["split"] for m in asked} == {"test"} and len(asked) == 3
    for site in ("a", "b", "ext"):
        log = _audit(tmp_path, site)
        assert not any(e["blocked"] for e in log)
        evaluations = [e for e in log if e["kind"] == EVALUATE]
        assert all(r["type"] != "arrays" for e in evaluations for r in e["records"].values())
        assert sum(bool(_personal_keys(e)) for e in log) == (0 if site == "ext" else 1)
        assert all(set(e["records"]) == {"arrays", "metrics"} for e in log if e["kind"] == TRAIN)
    held = sorted(p.relative_to(tmp_path).parts[0] for p in tmp_path.glob("*/output/personal/*/*.pt"))
    assert held == (["a", "b"] if how == "ditto" else [])  # Ditto's personal models stay in the training sites' output dirs
    trained = [m.content.config_records["config"].get("personal") for m in grid.sent if m.metadata.message_type == TRAIN]
    assert trained and all(flag == (how == "ditto") for flag in trained)


def test_a_training_site_without_personal_metrics_is_missing_with_why_and_the_rest_is_moved_out_of_its_row(tmp_path: Path) -> None:
    from server.personalisation import DP_REASON, record_personalisation
    from server.run_dir import RunDirectory
    from strategies.sites import NodeSite

    sites = {1: NodeSite(1, "a", "train", {}), 2: NodeSite(2, "dp", "train", {}, dp=True), 3: NodeSite(3, "c", "train", {}), 4: NodeSite(4, "ext", "external", {})}
    test = {"a": {"auc": 0.6, "personal/auc": 0.7, "personal/epochs": 4, "vs:global/delong_p": 0.2}, "dp": {"auc": 0.5}, "ext": {"auc": 0.55}}
    record_personalisation(RunDirectory(tmp_path), sites, test, {"c": "error: the site failed"})
    lines = {line["site"]: line for line in map(json.loads, (tmp_path / "personalisation.jsonl").read_text().splitlines())}
    assert lines["a"] == {"site": "a", "model": "federated", "status": "ok", "metrics": {"auc": 0.7, "epochs": 4}, "comparison": {"delong_p": 0.2}}
    assert test["a"] == {"auc": 0.6}  # the global model's row keeps only its own metrics
    assert lines["dp"]["reason"] == DP_REASON and "privacy budget" in DP_REASON
    assert (lines["c"]["status"], lines["c"]["reason"]) == ("missing", "error: the site failed")
    assert lines["ext"] == {"site": "ext", "model": "federated", "status": "global only"}
