"""Convergence curves: per-site and pooled per-round validation series, their figures, and runs without them."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from evaluation.convergence import NO_ROUNDS, convergence_section
from evaluation.report import write_report

RUN = {
    "run-id": "r", "task": "classification", "model": "small", "strategy": "fedavg", "num-rounds": 2,
    "local-epochs": 1, "image-size": 32, "seed": 0, "threshold-rule": "youden", "validate-every": 1,
}  # fmt: skip


def _val(round_: int | str, site: str, auc: float, loss: float, n: int, model: str = "federated") -> dict[str, Any]:
    return {"round": round_, "model": model, "site": site, "split": "val", "status": "ok", "metrics": {"auc": auc, "loss": loss, "n": n}}


def _lines() -> list[dict[str, Any]]:
    """Two rounds at sites a (10 val cases) and b (30); b missing in round 2; a train row and a final row that must be ignored."""
    return [
        {"round": 1, "model": "federated", "site": "a", "split": "train", "status": "ok", "metrics": {"train_loss": 0.9}},
        _val(1, "a", 0.6, 0.7, 10),
        _val(1, "b", 0.8, 0.5, 30),
        _val(2, "a", 0.7, 0.6, 10),
        {"round": 2, "model": "federated", "site": "b", "split": "val", "status": "missing", "reason": "timeout"},
        _val("final", "a", 0.99, 0.1, 10),
    ]


def test_pooled_series_is_the_case_weighted_mean_of_the_sites_that_reported() -> None:
    (series,) = convergence_section(_lines(), RUN)["series"]
    assert (series["model"], series["stage"], series["metric"], series["rounds"]) == ("federated", "", "auc", [1, 2])
    assert series["sites"]["a"]["value"] == [0.6, 0.7] and series["sites"]["b"]["value"] == [0.8, None]
    # round 1: (10 * 0.6 + 30 * 0.8) / 40 = 0.75, loss (10 * 0.7 + 30 * 0.5) / 40 = 0.55; round 2: site a alone
    assert series["pooled"]["value"] == pytest.approx([0.75, 0.7])
    assert series["pooled"]["loss"] == pytest.approx([0.55, 0.6])


def test_segmentation_rows_give_dice_series_split_by_stage() -> None:
    run = RUN | {"pipeline": "automatic", "segmenters": "unet", "num-rounds": 1}
    seg = {"round": 1, "model": "federated", "site": "a", "split": "val", "status": "ok", "metrics": {"seg_dice": 0.4, "loss": 0.3, "seg_n": 5, "num_examples": 5}}
    seg_b = seg | {"site": "b", "metrics": {"seg_dice": 0.7, "loss": 0.6, "seg_n": 15}}
    series = convergence_section([seg, seg_b, _val(2, "a", 0.9, 0.2, 4)], run)["series"]
    assert [(s["stage"], s["metric"], s["rounds"]) for s in series] == [("unet", "dice", [1]), ("classifier", "auc", [1])]
    assert series[0]["pooled"]["value"] == pytest.approx([(5 * 0.4 + 15 * 0.7) / 20])


def _run_dir(tmp_path: Path, lines: list[dict[str, Any]], run: dict[str, Any]) -> Path:
    folder = tmp_path / "run"
    folder.mkdir()
    site = {"name": "a", "role": "train", "counts": {"train": {"0": 5, "1": 5}, "val": {"0": 5, "1": 5}, "test": {"0": 5, "1": 5}}}
    (folder / "config.json").write_text(json.dumps({"run": run, "sites": [site, site | {"name": "b"}]}))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return folder


def test_report_embeds_and_lists_the_convergence_figure(tmp_path: Path) -> None:
    folder = _run_dir(tmp_path, _lines(), RUN)
    report = write_report(folder)
    assert report["convergence"]["series"][0]["pooled"]["value"] == pytest.approx([0.75, 0.7])
    png = (folder / "figures" / "convergence_federated.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    page = (folder / "report.html").read_text()
    assert 'id="convergence"' in page and base64.b64encode(png).decode("ascii") in page
    markdown = (folder / "report.md").read_text()
    assert "## Convergence" in markdown and "figures/convergence_federated.png" in markdown and "| 0.700 | 0.600 |" in markdown
    assert json.loads((folder / "report.json").read_text())["convergence"]["series"][0]["sites"]["b"]["value"] == [0.8, None]


def test_a_run_without_per_round_validation_says_so(tmp_path: Path) -> None:
    final_only = [line for line in _lines() if line["round"] == "final"]
    folder = _run_dir(tmp_path, final_only, RUN | {"validate-every": 0})
    report = write_report(folder)
    note = NO_ROUNDS.format(every=0)
    assert report["convergence"] == {"series": [], "pooling": report["convergence"]["pooling"], "note": note}
    assert not list((folder / "figures").glob("convergence_*"))
    assert note in (folder / "report.md").read_text()
    assert "validate-every = 0" in (folder / "report.html").read_text()
