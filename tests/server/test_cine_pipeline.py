"""Seed 001 through the federation: static key-frame and video models, federated k-fold CV, comparisons made at every site."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from evaluation.report import write_report
from models.run_config import RunConfig
from server.federation import run_federation
from server.run_dir import RunDirectory
from simulation.baselines import run_baselines
from tests.cine_sites import make_cine_site
from tests.server.test_federation import LoopbackGrid

SPLITS = "  val_fraction: 0.2\n  test_fraction: 0.34\n"  # enough test cases of each class at a training site for DeLong


@pytest.fixture(scope="module")
def cine_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], list[Path]]:
    """One cine federation with 2-fold cross-validation and its baselines: 2 training sites (frame folders, DICOM without stills), 1 external."""
    root = tmp_path_factory.mktemp("cine")
    sites = [
        make_cine_site(root, "a", n=16, seed=1, data_yaml=SPLITS),
        make_cine_site(root, "b", n=16, seed=2, storage="dicom", stills=False, data_yaml=SPLITS),
        make_cine_site(root, "ext", role="external", n=10, seed=3),
    ]
    cfg = RunConfig(
        task="video", pipeline="cine", video_models="tsm", video_width=4, clip_frames=4, image_size=24, num_rounds=1, local_epochs=1,
        cv_folds=2, runs_dir=str(root / "runs"), run_id="cine", lr=0.01,
    )  # fmt: skip
    run_dir = run_federation(LoopbackGrid(sites), cfg)  # type: ignore[arg-type]
    run_baselines(RunDirectory(run_dir), cfg, sites)
    return run_dir, write_report(run_dir), sites


def test_every_cine_model_is_tested_at_every_site_and_compared_there_with_the_static_model(cine_run: tuple[Path, dict[str, Any], list[Path]]) -> None:
    run_dir, report, _ = cine_run
    assert report["run"]["pipeline"] == "cine" and report["run"]["video_models"] == ["tsm"] and report["run"]["cv_folds"] == 2
    rows = {(r["model"], r["site"], r["split"]) for r in report["classification"]}
    for model in ("federated", "pooled", "local:a", "local:b"):
        assert {(f"{model}/{stage}", site, "test") for stage in ("static", "tsm") for site in ("a", "b", "ext")} <= rows
    against_static = {c["site"]: c for c in report["comparisons"] if (c["model_a"], c["model_b"]) == ("federated/tsm", "federated/static")}
    assert set(against_static) == {"a", "b", "ext"}  # made at every test site, the external one included
    for row in against_static.values():
        assert 0.0 <= row["delong_p"] <= 1.0 and {"auc_a", "auc_b", "nri", "idi"} <= set(row)
    assert {c["model_b"] for c in report["comparisons"] if c["model_a"] == "federated/tsm"} >= {"federated/static", "pooled/tsm", "local:a/tsm"}
    checkpoints = {p.stem for p in (run_dir / "checkpoints").glob("*.pt")}
    assert {"static", "tsm", "static-fold1", "static-fold2", "tsm-fold1", "tsm-fold2", "final"} <= checkpoints
    assert set(torch.load(run_dir / "checkpoints" / "final.pt")) == set(torch.load(run_dir / "checkpoints" / "tsm.pt"))


def test_the_report_gives_each_models_folds_and_the_chosen_fold_is_the_one_tested(cine_run: tuple[Path, dict[str, Any], list[Path]]) -> None:
    run_dir, report, _ = cine_run
    section = report["cross_validation"]
    models = {m["model"]: m for m in section["models"]}
    assert {"federated/static", "federated/tsm", "pooled/tsm", "local:a/static"} <= set(models) and section["folds"] == 2
    for model in models.values():
        assert [f["fold"] for f in model["folds"]] == [1, 2]
        aucs = {f["fold"]: f.get("auc", float("-inf")) for f in model["folds"]}
        assert model["chosen_fold"] == max(aucs, key=lambda k: (aucs[k], -k))
    federated = models["federated/tsm"]
    assert set(federated["folds"][0]["sites"]) == {"a", "b"} and "mean_auc" in federated
    fold = federated["chosen_fold"]
    for name in ("tsm", "static"):
        chosen = torch.load(run_dir / "checkpoints" / f"{name}.pt")
        picked = torch.load(run_dir / "checkpoints" / f"{name}-fold{models[f'federated/{name}']['chosen_fold']}.pt")
        assert all(torch.equal(chosen[k], picked[k]) for k in chosen)
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    fold_rows = [line for line in lines if line["round"] == f"cv-fold-{fold}" and line["model"] == "federated/tsm"]
    assert {line["site"] for line in fold_rows} == {"a", "b"}
    # each site validated the fold on that fold's held-out cases: the two folds' validation cases are all of its non-test cases
    n = {k: sum(line["metrics"]["n"] for line in lines if line["round"] == f"cv-fold-{k}" and line["model"] == "federated/tsm") for k in (1, 2)}
    assert n[1] + n[2] == sum(s["splits"]["train"] + s["splits"]["val"] for s in report["sites"] if s["role"] == "train")
    markdown = (run_dir / "report.md").read_text()
    assert "## Cross-validation (validation folds)" in markdown and "(chosen)" in markdown and "mean +/- SD" in markdown
    assert 'id="cross-validation"' in (run_dir / "report.html").read_text()


def test_comparison_statistics_are_all_that_left_the_sites(cine_run: tuple[Path, dict[str, Any], list[Path]]) -> None:
    _, _, sites = cine_run
    from protocol.metrics import COMPARISON_METRICS

    for site in sites:
        replies = [json.loads(line) for line in (site.parent / "output" / "audit" / "outgoing.jsonl").read_text().splitlines()]
        assert replies and all(not r["blocked"] for r in replies)
        compared = [k for r in replies for k in r["records"].get("metrics", {}).get("values", {}) if k.startswith("vs:")]
        assert compared and {k.split("/", 1)[1] for k in compared} <= set(COMPARISON_METRICS)
        assert {k.split("/", 1)[0] for k in compared} == {"vs:static"}


def test_a_comparison_with_a_stage_outside_the_plan_is_refused_by_name(cine_run: tuple[Path, dict[str, Any], list[Path]]) -> None:
    from flwr.app import ArrayRecord, RecordDict

    from client.node_site import SITE_CONFIG
    from client.work import ProtocolError, run_work
    from protocol.messages import EVALUATE, Evaluate

    run_dir, _, sites = cine_run
    cfg = RunConfig.from_mapping(json.loads((run_dir / "config.json").read_text())["run"]).replace(video_model="tsm")
    tsm = ArrayRecord(torch.load(run_dir / "checkpoints" / "tsm.pt"))
    message = Evaluate(run=cfg, split="test", compare=(("inception", "0" * 16),))
    with pytest.raises(ProtocolError, match="no stage 'inception' in the plan"):
        run_work(EVALUATE, RecordDict(message.records(tsm)), {SITE_CONFIG: str(sites[2])})
