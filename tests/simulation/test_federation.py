"""Integration: a tiny federation through Flower's simulation engine, with one broken site."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from simulation.phantom import make_phantom

pytestmark = pytest.mark.integration
CONTRACT = ("n", "n_positive", "auc", "auc_ci", "accuracy", "sensitivity", "specificity", "f1", "threshold")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Run ``axilla-simulate run`` once on the tiny phantom plus a site whose manifest has a bad label."""
    root = tmp_path_factory.mktemp("fed")
    sites = root / "sites"
    make_phantom(sites, "tiny", seed=1)
    broken = sites / "site_broken"
    shutil.copytree(sites / "site_b", broken)
    (broken / "site.yaml").write_text((broken / "site.yaml").read_text().replace("site: site_b", "site: site_broken"))
    rows = list(csv.DictReader((broken / "manifest.csv").open()))
    rows[2]["label"] = "2"
    with (broken / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    proc = subprocess.run(
        [
            sys.executable, "-m", "simulation.cli", "run", "--sites", str(sites), "--runs-dir", str(root / "runs"),
            "--set", "num-rounds=2", "--set", "local-epochs=1", "--set", "image-size=32",
        ],
        capture_output=True, text=True, timeout=600, cwd=root,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    return run_dir, proc.stdout + proc.stderr


def test_report_has_every_model_at_every_site(finished_run: tuple[Path, str]) -> None:
    run_dir, _ = finished_run
    report = json.loads((run_dir / "report.json").read_text())
    assert report["schema"] == "axilla.report/1" and report["run"]["rounds"] == 2
    assert {s["name"]: s["role"] for s in report["sites"]} == {"site_a": "train", "site_b": "train", "site_ext": "external"}
    test_rows = {(r["model"], r["site"]) for r in report["classification"] if r["split"] == "test"}
    models = {"federated", "pooled", "local:site_a", "local:site_b"}
    assert test_rows == {(m, s) for m in models for s in ("site_a", "site_b", "site_ext", "all")}
    for row in report["classification"]:
        if row["split"] == "test" and row["site"] == "site_ext":
            assert all(k in row for k in CONTRACT), row
            assert 0.0 <= row["auc"] <= 1.0 and row["auc_ci"][0] <= row["auc"] <= row["auc_ci"][1]
    federated = [r for r in report["classification"] if r["model"] == "federated"]
    assert len({r["threshold"] for r in federated}) == 1  # one operating point, applied unchanged everywhere
    assert set(report["phantom"]["bayes_auc"]) == {"site_a", "site_b", "site_ext"}
    assert "site_ext: test split" in (run_dir / "report.md").read_text()


def test_broken_site_is_excluded_with_its_row_named(finished_run: tuple[Path, str]) -> None:
    run_dir, log = finished_run
    excluded = json.loads((run_dir / "report.json").read_text())["excluded"]
    (reason,) = excluded.values()
    assert "row 4" in reason and "label is not 0 or 1" in reason
    assert "manifest.csv" in log and "row 4" in log  # the site's own log names the file


def test_rounds_checkpoints_and_roles(finished_run: tuple[Path, str]) -> None:
    run_dir, _ = finished_run
    names = {p.name for p in (run_dir / "checkpoints").iterdir()}
    assert {"round-000.pt", "round-001.pt", "round-002.pt", "final.pt", "local-site_a.pt", "local-site_b.pt", "pooled.pt"} <= names
    initial, final = (torch.load(run_dir / "checkpoints" / n) for n in ("round-000.pt", "final.pt"))
    assert any(not torch.equal(initial[k], final[k]) for k in initial)
    lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    per_round = {(l["round"], l["site"], l["split"]) for l in lines if l["round"] != "final"}
    assert {(r, s, "val") for r in (1, 2) for s in ("site_a", "site_b")} <= per_round
    assert not any(l["site"] == "site_ext" and l["split"] in ("train", "val") for l in lines)  # external never trains
    config = json.loads((run_dir / "config.json").read_text())
    assert config["versions"]["flwr"] and config["run"]["num-rounds"] == 2


def test_cross_site_report_matrix_pooled_rows_and_comparisons(finished_run: tuple[Path, str]) -> None:
    run_dir, _ = finished_run
    report = json.loads((run_dir / "report.json").read_text())
    models = {"federated", "pooled", "local:site_a", "local:site_b"}
    rows = {(r["model"], r["site"], r["split"]): r for r in report["classification"]}
    for model in models:  # every model pooled across all sites from aggregates
        pooled = rows[(model, "all", "test")]
        per_site = [rows[(model, s, "test")] for s in ("site_a", "site_b", "site_ext")]
        assert pooled["n"] == sum(r["n"] for r in per_site)
        assert pooled["n_positive"] == sum(r["n_positive"] for r in per_site)
        assert pooled["threshold"] == per_site[0]["threshold"]
    ext = rows[("federated", "site_ext", "test")]
    for key in ("sensitivity_ci", "specificity_ci", "accuracy_ci", "hl_p", "pr_auc", "brier"):
        assert key in ext, key
    assert ext["sensitivity_ci"][0] <= ext["sensitivity"] <= ext["sensitivity_ci"][1]
    compared = {(c["site"], c["model_b"]) for c in report["comparisons"]}
    assert compared == {(s, m) for s in ("site_a", "site_b", "site_ext") for m in models - {"federated"}}
    assert all(0.0 <= c["delong_p"] <= 1.0 for c in report["comparisons"])
    assert report["pooling"]["bins"] == 200
    assert {(c["model"], c["site"], c["split"]) for c in report["curves"]} == set(rows)


def test_html_figures_and_regeneration_from_the_run_directory_alone(finished_run: tuple[Path, str], tmp_path: Path) -> None:
    run_dir, _ = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    for name in ("report.json", "report.md", "report.html"):
        (copy / name).unlink()
    shutil.rmtree(copy / "figures")
    proc = subprocess.run([sys.executable, "-m", "evaluation.cli", str(copy)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (copy / "report.json").read_bytes() == (run_dir / "report.json").read_bytes()
    assert (copy / "report.html").read_bytes() == (run_dir / "report.html").read_bytes()
    figures = sorted(p.name for p in (run_dir / "figures").iterdir())
    assert "auc_heatmap_test.png" in figures and "roc_site_ext_test.png" in figures and "decision_all_test.png" in figures
    html = (run_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(figures) and "http://" not in html and "https://" not in html
