"""Image features as candidate variables of the clinical fusion (``clinical-features``): their names, the refusals, and a run on the tiny multimodal phantom."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from client.privacy_guard import policy_violations
from client.radiomics import FEATURE_NAMES
from models.run_config import RunConfig
from models.stages import plan_for
from protocol.clinical import CLINICAL, ClinicalQuery
from server.clinical_features import feature_blocks, feature_names
from server.clinical_schema import ClinicalError
from server.federation import run_federation
from tests.multimodal_sites import tiny_multimodal
from tests.server.test_fusion_pipeline import RecordingGrid

FUSION = RunConfig(
    task="fusion", pipeline="fusion", modalities="mammography,radiomics", fusion_strategies="multilayer", mammo_size=32, mammo_width=4,
    clinical="fusion", clinical_features="mammography,radiomics",
)  # fmt: skip


def test_the_final_fusion_models_encoders_name_the_feature_columns() -> None:
    mammography, radiomics = feature_blocks(plan_for(FUSION).last.cfg)
    assert mammography.names == tuple(f"mammography_{v}_{i}" for v in ("cc", "mlo") for i in range(8 * 4))
    assert radiomics.names[0] == f"radiomics_cc_{FEATURE_NAMES[0]}" and radiomics.names[-1] == f"radiomics_mlo_{FEATURE_NAMES[-1]}"
    assert len(radiomics.names) == 2 * len(FEATURE_NAMES) and feature_names("pathology", 3) == ("pathology_0", "pathology_1", "pathology_2")


def test_a_model_without_encoders_or_without_the_modality_is_refused_naming_the_key() -> None:
    with pytest.raises(ClinicalError, match=r"'clinical-features' = 'radiomics'.*task = 'classification'.*no modality encoders"):
        feature_blocks(RunConfig(clinical="fusion", clinical_features="radiomics"))
    with pytest.raises(ClinicalError, match=r"'clinical-features' entry 'pathology'.*no pathology encoder.*mammography, radiomics"):
        feature_blocks(plan_for(FUSION.replace(clinical_features="radiomics,pathology")).last.cfg)


@pytest.fixture(scope="module")
def radiomics_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], RecordingGrid]:
    """The fusion network over mammography and radiomics (1 round), then the clinical fusion with its radiomics embeddings as candidates."""
    root = tmp_path_factory.mktemp("clinical-features")
    cfg = RunConfig(
        task="fusion", modalities="mammography,radiomics", fusion="multilayer", image_size=32, mammo_size=32, mammo_width=4, num_rounds=1,
        local_epochs=1, min_train_sites=1, clinical="fusion", clinical_folds=2, clinical_features="radiomics", baselines=False,
        runs_dir=str(root / "runs"), run_id="features",
    )  # fmt: skip
    grid = RecordingGrid(tiny_multimodal(root / "sites"))
    run_dir = run_federation(grid, cfg)  # type: ignore[arg-type]
    return run_dir, json.loads((run_dir / "clinical.json").read_text()), grid


def test_the_radiomics_embeddings_are_candidates_of_the_selection_and_the_models_are_evaluated(radiomics_run: tuple[Path, dict[str, Any], RecordingGrid]) -> None:
    run_dir, clinical, _ = radiomics_run
    assert "stopped" not in clinical, clinical.get("stopped")
    names = [f"radiomics_{v}_{f}" for v in ("cc", "mlo") for f in FEATURE_NAMES]
    assert clinical["image_features"] == {"radiomics": names}
    selection = clinical["selection"]
    assert set(names) <= set(selection["tests"]) and selection["counts"]["start"] == len(selection["tests"]) >= len(names) + 1
    tested = [selection["tests"][n] for n in names if selection["tests"][n] == selection["tests"][n]]  # a constant feature's p is NaN
    assert len(tested) > len(names) // 2 and all(0 <= p <= 1 for p in tested)
    assert {"deep", "pre-fusion"} <= set(clinical["models"])
    chosen = [n for n in selection["selected"] if n in names]
    assert ("radiomics-features" in clinical["models"]) == bool(chosen)
    rows = {(r["model"], r["site"]) for r in json.loads((run_dir / "report.json").read_text())["classification"] if r["split"] == "test"}
    assert {(m, "site_ext") for m in clinical["models"]} <= rows
    md = (run_dir / "report.md").read_text()
    assert "### Feature selection (as seed 004)" in md and "radiomics_cc_firstorder_mean" in md and "92 radiomics features" in md


def test_every_clinical_reply_holds_only_aggregates_of_the_named_width(radiomics_run: tuple[Path, dict[str, Any], RecordingGrid]) -> None:
    _, _, grid = radiomics_run
    widths = set()
    clinical = [(m, r) for m, r in grid.pairs if m.metadata.message_type == CLINICAL]
    assert clinical
    for message, reply in clinical:
        assert policy_violations(message, reply) == []
        query = ClinicalQuery.of(message.content)
        if query.job == "moments" and not reply.has_error():
            width = query.parsed.design.width
            assert len(reply.content.metric_records["metrics"]["g0/sum"]) == width
            widths.add(width)
    assert widths and max(widths) >= 1 + 1 + 92  # intercept, signature and the 92 radiomics columns at least
