"""Seeds 003/004 through the federation: one model per modality, fusion models, a site without a modality, federated z-scoring, privacy."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import Message, MetricRecord

from client.multimodal_data import load_multimodal_site_data
from client.privacy_guard import policy_violations
from client.site_config import load_site_config
from evaluation.report import write_report
from models.run_config import RunConfig
from models.stages import modality_config
from models.task import task_for
from server.federation import run_federation
from tests.multimodal_sites import WITHOUT_PATHOLOGY, tiny_multimodal
from tests.server.test_federation import LoopbackGrid

MODALITIES = ("ultrasound", "pathology", "mammography", "radiomics")


class RecordingGrid(LoopbackGrid):
    """The loopback grid, keeping every (message, reply) pair."""

    def __init__(self, site_yamls: list[Path]) -> None:
        super().__init__(site_yamls)
        self.pairs: list[tuple[Message, Message]] = []

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        messages = list(messages)
        replies = super().send_and_receive(messages, timeout=timeout)
        by_node = {m.metadata.dst_node_id: m for m in messages}
        self.pairs += [(by_node[r.metadata.src_node_id], r) for r in replies]
        return replies


@pytest.fixture(scope="module")
def fusion_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], list[Path], RecordingGrid]:
    """Every modality, then the multilayer and voting fusions, 1 round each, on the tiny multimodal phantom."""
    root = tmp_path_factory.mktemp("multimodal")
    sites = tiny_multimodal(root / "sites")
    cfg = RunConfig(
        task="fusion", pipeline="fusion", modalities=",".join(MODALITIES), fusion_strategies="voting,multilayer", image_size=32,
        pathology_size=32, pathology_patches=2, pathology_width=4, mammo_size=32, mammo_width=4, num_rounds=1, local_epochs=1,
        min_train_sites=1, runs_dir=str(root / "runs"), run_id="fusion", lr=0.01,
    )  # fmt: skip
    grid = RecordingGrid(sites)
    run_dir = run_federation(grid, cfg)  # type: ignore[arg-type]
    return run_dir, write_report(run_dir), sites, grid


def test_every_single_modality_and_fusion_model_is_tested_at_every_site_and_compared_there(fusion_run: tuple[Path, dict[str, Any], list[Path], RecordingGrid]) -> None:
    _, report, _, _ = fusion_run
    assert report["run"]["pipeline"] == "fusion" and report["run"]["modalities"] == list(MODALITIES)
    rows = {(r["model"], r["site"]) for r in report["classification"] if r["split"] == "test"}
    for model in (*MODALITIES, "fusion-voting", "fusion-multilayer"):
        sites = {"site_a", "site_ext"} | ({WITHOUT_PATHOLOGY} if model != "pathology" else set())
        assert {(f"federated/{model}", site) for site in sites} <= rows, model
    assert ("federated/pathology", WITHOUT_PATHOLOGY) not in rows  # no case there has pathology
    fused = {(c["model_b"], c["site"]) for c in report["comparisons"] if c["model_a"] == "federated/fusion-multilayer"}
    assert {(f"federated/{m}", "site_ext") for m in MODALITIES} <= fused  # DeLong against every single modality at the external site
    assert ("federated/ultrasound", WITHOUT_PATHOLOGY) in fused and ("federated/pathology", WITHOUT_PATHOLOGY) not in fused


def test_a_site_without_pathology_trains_and_is_evaluated_on_what_it_has(fusion_run: tuple[Path, dict[str, Any], list[Path], RecordingGrid]) -> None:
    run_dir, report, _, _ = fusion_run
    refused = [m for m in report["missing"] if m["site"] == WITHOUT_PATHOLOGY]
    assert len(refused) == 1 and "no training case" in refused[0]["reason"] and "pathology" in refused[0]["reason"]
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    trained = {line["model"] for line in lines if line["site"] == WITHOUT_PATHOLOGY and line["split"] == "train" and line["status"] == "ok"}
    assert {"federated/fusion-voting", "federated/fusion-multilayer", "federated/ultrasound"} <= trained
    cases = report["modalities"]["cases"]
    assert cases[WITHOUT_PATHOLOGY]["test"]["pathology"] == 0 and cases[WITHOUT_PATHOLOGY]["test"]["ultrasound"] > 0
    assert cases["site_ext"]["test"]["pathology"] == cases["site_ext"]["test"]["ultrasound"] > 0
    assert "## Modalities per site" in (run_dir / "report.md").read_text()


def test_radiomics_are_z_scored_with_the_pooled_training_statistics(fusion_run: tuple[Path, dict[str, Any], list[Path], RecordingGrid]) -> None:
    run_dir, _, sites, _ = fusion_run
    record = json.loads((run_dir / "standardisation-radiomics.json").read_text())
    assert record["sites"] == ["site_a", "site_b"] and not record["missing"]
    cfg = modality_config(RunConfig.from_mapping(json.loads((run_dir / "config.json").read_text())["run"]), "radiomics")
    spec = task_for(cfg).inputs(cfg)
    raw = np.concatenate([load_multimodal_site_data(load_site_config(p), spec).splits["train"].extra["radiomics"].numpy() for p in sites[:2]])  # type: ignore[index]
    (module,) = record["modules"].values()
    np.testing.assert_allclose(module["mean"], np.nanmean(raw, axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(module["sd"], np.nanstd(raw, axis=0, ddof=1), rtol=1e-3, atol=1e-5)
    single = torch.load(run_dir / "checkpoints" / "radiomics.pt")
    fused = torch.load(run_dir / "checkpoints" / "fusion-multilayer.pt")
    key = "encoders.radiomics.standardise.mean"
    # the fusion took the single model's encoder over (FedAvg's weighted mean of equal buffers rounds in float32)
    torch.testing.assert_close(torch.as_tensor(fused[key]), torch.as_tensor(single[key]), rtol=1e-6, atol=0.0)
    assert not (run_dir / "standardisation-fusion-multilayer.json").exists()  # nothing left unset to standardise again


def test_no_pixel_patch_or_feature_vector_of_a_case_leaves_a_site(fusion_run: tuple[Path, dict[str, Any], list[Path], RecordingGrid]) -> None:
    _, _, _, grid = fusion_run
    assert grid.pairs
    widths = set()
    for message, reply in grid.pairs:
        assert policy_violations(message, reply) == []
        if reply.has_error():
            assert "/" not in reply.error.reason
            continue
        for name, record in reply.content.items():
            assert name in ("arrays", "metrics", "site"), name
            if isinstance(record, MetricRecord):
                widths |= {len(v) for k, v in record.items() if isinstance(v, list) and "moment" in k}
    assert widths == {92}  # the only feature-length lists: per-feature sums of the 2 x 46 radiomics features
