"""The automatic pipeline and the end-to-end model through the real server job and ClientApp (in process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from flwr.app import ArrayRecord

from models.run_config import RunConfig
from protocol.messages import wire_model
from server.federation import run_federation
from tests.conftest import make_site
from tests.server.test_federation import DyingGrid, KilledServer, LoopbackGrid

SEGMENTERS = ("unet", "deeplabv3")


def _sites(tmp_path: Path) -> list[Path]:
    return [
        make_site(tmp_path, "a", n=20, seed=1, masks=True),
        make_site(tmp_path, "b", n=20, seed=2, kind="dicom", masks=True),
        make_site(tmp_path, "ext", role="external", n=12, seed=3),  # no masks: crops are fully automatic there
    ]


def _cfg(tmp_path: Path, **changes: object) -> RunConfig:
    base = RunConfig(
        pipeline="automatic", segmenters=",".join(SEGMENTERS), image_size=32, seg_image_size=32, num_rounds=1, local_epochs=1,
        runs_dir=str(tmp_path / "runs"), run_id="r1", grad_cam_cases=2,
    )  # fmt: skip
    return base.replace(**changes)


def test_segmenters_then_classifier_on_predicted_crops(tmp_path: Path) -> None:
    grid = LoopbackGrid(_sites(tmp_path))
    run_dir = run_federation(grid, _cfg(tmp_path))  # type: ignore[arg-type]
    report = json.loads((run_dir / "report.json").read_text())
    assert report["run"]["pipeline"] == "automatic" and report["run"]["lesion_crop"] == "predicted"
    seg = {(r["segmenter"], r["site"], r["split"]): r for r in report["segmentation"]}
    for segmenter in (*SEGMENTERS, "fusion-mean", "fusion-union"):
        for site, split in (("a", "val"), ("b", "val"), ("a", "test"), ("b", "test")):
            row = seg[(segmenter, site, split)]
            assert row["model"] == "federated" and row["n"] > 0 and 0.0 <= row["dice"] <= 1.0 and 0.0 <= row["recall"] <= 1.0
        assert (segmenter, "ext", "test") not in seg  # no ground truth there: no Dice, but still classified
    union, mean = seg[("fusion-union", "all", "test")], seg[("fusion-mean", "all", "test")]
    assert union["recall"] >= mean["recall"] - 1e-9  # the union is the high-recall rule
    assert {(r["site"], r["split"]) for r in report["classification"] if r["model"] == "federated"} >= {
        ("a", "test"), ("b", "test"), ("ext", "test"), ("a", "val"), ("b", "val"),
    }
    names = {p.name for p in (run_dir / "checkpoints").iterdir()}
    assert {"unet.pt", "deeplabv3.pt", "classifier.pt", "final.pt", "round-000.pt", "round-003.pt"} <= names
    # stages in order, numbered across stages; the segmenters travel once per site, then by digest; replies never carry them
    trains = [m for m in grid.sent if m.metadata.message_type == "train"]
    stages = [(int(m.content["config"]["server-round"]), m.content["run"]["task"], m.content["run"]["segmenter"]) for m in trains]
    assert sorted({(r, t) for r, t, _ in stages}) == [(1, "segmentation"), (2, "segmentation"), (3, "classification")]
    digests = {name: wire_model(ArrayRecord(torch.load(run_dir / "checkpoints" / f"{name}.pt")))[0] for name in SEGMENTERS}  # by packed form
    for message in trains:
        assert set(message.content.array_records) == {"arrays"}  # the classifier's segmenters are held since their evaluation
        if message.content["run"]["task"] == "classification":
            assert message.content["config"]["segmenters"] == ",".join(f"{n}={digests[n]}" for n in SEGMENTERS)
    carried = [(m.metadata.dst_node_id, name) for m in grid.sent for name in m.content.array_records if name.startswith("model:")]
    assert sorted(carried) == sorted((node, f"model:{digests[n]}") for node in grid.get_node_ids() for n in SEGMENTERS)  # once per site
    seg_evals = [m for m in grid.sent if m.metadata.message_type == "evaluate" and m.content["config"]["candidates"]]
    assert len(seg_evals) == 5  # one message per site and split refers to every segmenter: val at a, b; test at a, b, ext
    assert {m.content["config"]["candidates"] for m in seg_evals} == {"unet,deeplabv3,fusion-mean,fusion-union"}
    classifier = torch.load(run_dir / "checkpoints" / "classifier.pt")
    assert set(classifier) == set(torch.load(run_dir / "checkpoints" / "final.pt"))
    # Grad-CAM overlays stay at the sites; the run directory holds none
    for site in ("a", "b", "ext"):
        pngs = list((tmp_path / site / "output" / "grad_cam" / "r1" / "federated").glob("*.png"))
        assert len(pngs) == 2
    assert not [p for p in run_dir.rglob("*") if "grad" in p.name.lower() or any(c.startswith(("a-", "b-", "ext-")) for c in p.parts)]
    assert all(p.parent.name == "figures" for p in run_dir.rglob("*.png"))
    md = (run_dir / "report.md").read_text()
    assert "Table 3" in md and "| federated | fusion-union | a | test |" in md


def test_a_resumed_pipeline_skips_finished_stages(tmp_path: Path) -> None:
    sites = _sites(tmp_path)
    with pytest.raises(KilledServer):
        run_federation(DyingGrid(sites, die_at_round=3), _cfg(tmp_path))  # type: ignore[arg-type]
    interrupted = tmp_path / "runs" / "r1"
    grid = LoopbackGrid(sites)
    resumed = run_federation(grid, _cfg(tmp_path, run_id="other", resume_from=str(interrupted)))  # type: ignore[arg-type]
    trained = {m.content["run"]["task"] for m in grid.sent if m.metadata.message_type == "train"}
    assert trained == {"classification"}  # both segmenters were done: only the classifier trains again
    report = json.loads((resumed / "report.json").read_text())
    assert {r["segmenter"] for r in report["segmentation"]} == {*SEGMENTERS, "fusion-mean", "fusion-union"}
    assert any(r["site"] == "ext" and r["split"] == "test" for r in report["classification"])


def test_end_to_end_operating_point_for_a_target_specificity(tmp_path: Path) -> None:
    sites = [
        make_site(tmp_path, "a", n=24, seed=1, masks=True),
        make_site(tmp_path, "b", n=24, seed=2, masks=True),
        make_site(tmp_path, "ext", role="external", n=16, seed=3, masks=True),
    ]
    cfg = RunConfig(
        task="end-to-end", segmenter="deeplabv3plus", image_size=32, num_rounds=2, local_epochs=1, threshold_rule="specificity",
        threshold_target=1.0, runs_dir=str(tmp_path / "runs"), run_id="e2e", grad_cam_cases=1,
    )  # fmt: skip
    run_dir = run_federation(LoopbackGrid(sites), cfg)  # type: ignore[arg-type]
    report = json.loads((run_dir / "report.json").read_text())
    assert report["run"]["threshold_target"] == 1.0 and report["run"]["seg_loss_weight"] == 0.5
    rows = report["classification"]
    thresholds = {r["threshold"] for r in rows}
    assert len(thresholds) == 1  # chosen once on validation, carried unchanged to every site
    assert next(r for r in rows if r["site"] == "all" and r["split"] == "val")["specificity"] == 1.0
    assert {r["site"] for r in rows if r["split"] == "test" and "specificity" in r} == {"a", "b", "ext", "all"}
    assert {(r["segmenter"], r["site"]) for r in report["segmentation"] if r["split"] == "test"} == {
        ("deeplabv3plus", s) for s in ("a", "b", "ext", "all")
    }
    assert "target 1.0" in (run_dir / "report.md").read_text()
    assert len(list((tmp_path / "ext" / "output" / "grad_cam" / "e2e" / "federated").glob("*.png"))) == 1
