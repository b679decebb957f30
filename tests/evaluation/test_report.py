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
               "specificity": 0.83, "npv": 0.7, "f1": 0.6, "threshold": 0.4, "tp": 4, "hist_pos": [1, 2]}
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
    assert "tp" not in rows[0] and "hist_pos" not in rows[0]  # only contract fields
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


def test_segmentation_rows_per_segmenter_site_and_split_with_weighted_all_rows(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    config = json.loads((run / "config.json").read_text())
    config["run"] |= {"pipeline": "automatic", "segmenters": "unetpp,unet", "seg-fusion": "union", "lesion-crop": "none",
                      "crop-margin": 4, "seg-image-size": 64}
    config["description"] = {"pipeline": "automatic", "segmenters": ["unetpp", "unet"], "seg_fusion": "union", "seg_image_size": 64,
                             "lesion_crop": "predicted", "crop_margin": 4}  # as server.federation.describe_run writes it
    (run / "config.json").write_text(json.dumps(config))

    def seg(dice: float, n: int, empty: int = 0) -> dict:
        return {"num_examples": n, "loss": 0.3, "seg_n": n, "seg_dice": dice, "seg_dice_sd": 0.1, "seg_iou": dice - 0.1,
                "seg_iou_sd": 0.1, "seg_precision": 0.9, "seg_precision_sd": 0.0, "seg_recall": 0.8, "seg_recall_sd": 0.0,
                "seg_n_truth_empty": empty, "seg_n_pred_empty": 0}

    lines = [
        {"round": "final", "model": "federated", "segmenter": s, "site": site, "split": "test", "status": "ok", "metrics": seg(d, n, e)}
        for s in ("unet", "fusion-union", "unetpp") for site, d, n, e in (("a", 0.9, 10, 1), ("ext", 0.6, 30, 0))
    ] + [{"round": "final", "model": "federated", "segmenter": "unet", "site": "b", "split": "test", "status": "ok", "metrics": {"seg_n": 0}}]
    with (run / "metrics.jsonl").open("a") as handle:
        handle.writelines(json.dumps(l) + "\n" for l in lines)
    report = write_report(run)
    rows = report["segmentation"]
    assert [r["segmenter"] for r in rows if r["site"] == "a"] == ["unetpp", "unet", "fusion-union"]  # the pipeline's order, fusions after
    a = next(r for r in rows if r["site"] == "a" and r["segmenter"] == "unet")
    assert a == {"model": "federated", "segmenter": "unet", "site": "a", "split": "test", "n": 10, "dice": 0.9, "dice_sd": 0.1,
                 "iou": 0.8, "iou_sd": 0.1, "precision": 0.9, "precision_sd": 0.0, "recall": 0.8, "recall_sd": 0.0,
                 "n_truth_empty": 1, "n_pred_empty": 0}
    pooled = next(r for r in rows if r["site"] == "all" and r["segmenter"] == "unet")
    assert pooled["n"] == 40 and abs(pooled["dice"] - (0.9 * 10 + 0.6 * 30) / 40) < 1e-12 and pooled["n_truth_empty"] == 1
    assert not any(r["site"] == "b" for r in rows)  # a site without ground-truth masks has no Dice, not a faked one
    assert [r["model"] for r in report["classification"]] == ["federated", "local:a"]  # segmentation lines are not classification rows
    assert report["run"]["segmenters"] == ["unetpp", "unet"] and report["run"]["seg_fusion"] == "union"
    md = (run / "report.md").read_text()
    assert "Table 3" in md and "| federated | fusion-union | ext | test | 30 | 0.600 | 0.500 | 0.900 | 0.800 |" in md
    assert 'id="segmentation"' in (run / "report.html").read_text()


def test_the_endpoint_is_named_in_report_json_markdown_and_html(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    assert build_report(run)["run"]["endpoint"] == {"name": "axillary lymph-node metastasis", "positive": "metastasis", "negative": "no metastasis"}
    config = json.loads((run / "config.json").read_text())
    config["run"] |= {"endpoint": "lesion malignancy", "endpoint-positive": "malignant", "endpoint-negative": "benign"}
    (run / "config.json").write_text(json.dumps(config))
    report = write_report(run)
    assert report["run"]["endpoint"] == {"name": "lesion malignancy", "positive": "malignant", "negative": "benign"}
    named = "lesion malignancy (positive: malignant, negative: benign)"
    assert f"Endpoint: {named}." in (run / "report.md").read_text()
    assert named in (run / "report.html").read_text()
