"""report.json and report.md built from a run directory alone."""

from __future__ import annotations

import json
from pathlib import Path

from evaluation.cli import main as report_main
from evaluation.report import SCHEMA, build_report, write_report


def _run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run-1"
    run.mkdir()
    config = {
        "run": {
            "run-id": "run-1", "task": "classification", "model": "small", "strategy": "fedavg", "num-rounds": 2,
            "local-epochs": 1, "image-size": 32, "seed": 0, "threshold-rule": "youden",
        },
        "sites": [
            {"name": "a", "role": "train", "counts": {"train": {"0": 10, "1": 6}, "val": {"0": 3, "1": 2}, "test": {"0": 3, "1": 2}}},
            {"name": "ext", "role": "external", "counts": {"train": {"0": 0, "1": 0}, "val": {"0": 0, "1": 0}, "test": {"0": 12, "1": 8}}},
        ],
        "excluded": {"node-9": "manifest row 4: label is not 0 or 1"},
    }
    (run / "config.json").write_text(json.dumps(config))
    metrics = {"n": 20, "n_positive": 8, "auc": 0.8, "auc_ci": [0.6, 1.0], "accuracy": 0.7, "sensitivity": 0.5,
               "specificity": 0.83, "npv": 0.7, "f1": 0.6, "threshold": 0.4, "tp": 4, "hist-pos": [1, 2]}
    lines = [
        {"round": 1, "model": "federated", "site": "a", "split": "val", "status": "ok", "metrics": {"auc": 0.6}},
        {"round": 2, "model": "federated", "site": "a", "split": "train", "status": "missing", "reason": "no reply before the round timeout"},
        {"round": "final", "model": "local:a", "site": "ext", "split": "test", "status": "ok", "metrics": metrics},
        {"round": "final", "model": "federated", "site": "ext", "split": "test", "status": "ok", "metrics": metrics},
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
    (run / "phantom.json").write_text(json.dumps({"bayes_auc": {"a": 0.85, "ext": 0.88}}))
    return run


def test_report_follows_the_contract(tmp_path: Path) -> None:
    report = build_report(_run_dir(tmp_path))
    assert report["schema"] == SCHEMA and report["run"]["id"] == "run-1" and report["run"]["rounds"] == 2
    assert report["sites"][0] == {"name": "a", "role": "train", "n_cases": 26, "n_positive": 10, "splits": {"train": 16, "val": 5, "test": 5}}
    rows = report["classification"]
    assert [r["model"] for r in rows] == ["federated", "local:a"]  # only final evaluations, federated first
    assert "ppv" not in rows[0]  # undefined values are omitted, never faked
    assert "tp" not in rows[0] and "hist-pos" not in rows[0]  # only contract fields
    assert rows[0]["auc_ci"] == [0.6, 1.0]
    assert report["phantom"]["bayes_auc"]["ext"] == 0.88
    assert report["missing"][0]["site"] == "a" and report["excluded"] == {"node-9": "manifest row 4: label is not 0 or 1"}


def test_regeneration_is_identical_and_markdown_is_readable(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    run = _run_dir(tmp_path)
    write_report(run)
    first = (run / "report.json").read_bytes()
    assert report_main([str(run)]) == 0
    assert (run / "report.json").read_bytes() == first
    md = (run / "report.md").read_text()
    assert "## ext: test split" in md and "0.800 (0.600-1.000)" in md and "Bayes ceiling" in md
    assert "| local:a | 20 |" in md
    assert report_main([str(tmp_path)]) == 2
