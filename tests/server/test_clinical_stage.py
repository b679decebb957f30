"""The clinical stage through real messages: Table 1, exact federated fits, the report's sections, privacy, a refusing site."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from client.privacy_guard import audit_path
from client.site_config import load_site_config
from client.site_index import read_cases
from protocol.clinical import CLINICAL, ClinicalQuery
from server.federation import run_federation
from tests.conftest import make_site
from tests.server.test_federation import LoopbackGrid, _cfg

TYPES = ("IDC", "ILC", "other")
DECLARED = (
    "  clinical:\n    age: continuous\n    tumor_size_mm: continuous\n    her2: binary\n"
    "    histologic_type: {categorical: [IDC, ILC, other]}\n    histologic_grade: {ordinal: ['1', '2', '3']}\n"
    "    reader_call: binary\n    reader_score: {ordinal: ['2', '3', '4', '5']}\n"
)


def _clinical_rows(seed: int, missing_age: int = 0):  # noqa: ANN202
    """A manifest editor adding clinical and reader columns that follow the label (and ``missing_age`` empty ages)."""

    def edit(rows: list[dict[str, str]]) -> None:
        rng = np.random.default_rng(100 + seed)
        for i, row in enumerate(rows):
            y = int(row["label"])
            row["age"] = "" if i < missing_age else f"{52 - 5 * y + 10 * rng.normal():.1f}"
            row["tumor_size_mm"] = f"{np.exp(np.log(18) + 0.35 * y + 0.3 * rng.normal()):.1f}"
            row["her2"] = str(int(rng.random() < 0.12 + 0.3 * y))
            row["histologic_type"] = str(rng.choice(TYPES, p=(0.6, 0.2, 0.2)))
            row["histologic_grade"] = str(int(np.clip(np.rint(2 + 0.5 * y + 0.7 * rng.normal()), 1, 3)))
            row["reader_call"] = str(y if rng.random() > 0.25 else 1 - y)
            row["reader_score"] = str(int(np.clip(3 + 1.2 * y + rng.normal(), 2, 5).round()))

    return edit


@dataclass
class ClinicalRun:
    run_dir: Path
    sites: list[Path]
    grid: LoopbackGrid
    report: dict
    clinical: dict


@pytest.fixture(scope="module")
def combined(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClinicalRun]:
    root = tmp_path_factory.mktemp("clinical")
    sites = [
        make_site(root, "a", n=32, seed=1, rows=_clinical_rows(1, missing_age=3), data_yaml=DECLARED),
        make_site(root, "b", n=30, seed=2, rows=_clinical_rows(2), data_yaml=DECLARED),
        make_site(root, "c", n=28, seed=3, rows=_clinical_rows(3), data_yaml=DECLARED),
        make_site(root, "ext", role="external", n=30, seed=4, rows=_clinical_rows(4), data_yaml=DECLARED),
    ]
    grid = LoopbackGrid(sites)
    cfg = _cfg(root, num_rounds=1, clinical="combined", readers="reader_call,reader_score", clinical_screen_p=0.5)
    run_dir = run_federation(grid, cfg)  # type: ignore[arg-type]
    report = json.loads((run_dir / "report.json").read_text())
    yield ClinicalRun(run_dir, sites, grid, report, json.loads((run_dir / "clinical.json").read_text()))


def _pooled_train(sites: list[Path], names: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """The training sites' training rows pooled (as no federation may): complete cases, the design's columns."""
    frames = []
    for path in sites:
        config = load_site_config(path)
        if config.role != "train":
            continue
        cases, splits = read_cases(config)
        manifest = pd.read_csv(config.data.manifest, dtype=str, keep_default_na=False).set_index("case_id")
        frames.append(manifest.loc[[c.case_id for c in cases if splits[c.case_id] == "train"]])
    rows = pd.concat(frames)
    rows = rows[rows["age"] != ""]
    x = pd.DataFrame(index=rows.index)
    x["intercept"] = 1.0
    for name in names[1:]:
        if "[" in name:
            variable, level = name[:-1].split("[")
            x[name] = (rows[variable] == level).astype(float)
        elif name == "histologic_grade":
            x[name] = rows[name].astype(float) - 1.0
        else:
            x[name] = rows[name].astype(float)
    return x, rows["label"].astype(float).to_numpy()


class TestCombined:
    def test_univariable_and_multivariable_fits_equal_statsmodels_on_the_pooled_rows(self, combined: ClinicalRun) -> None:
        fits = {**{f"uni:{k}": v for k, v in combined.clinical["univariable"].items() if k != "dl_signature"}, "clinical": combined.clinical["multivariable"]["clinical"]}
        assert len(fits) == 6 and all("columns" in f for f in fits.values())
        for name, fit in fits.items():
            names = [c["variable"] for c in fit["columns"]]
            x, y = _pooled_train(combined.sites, names)
            pooled = sm.Logit(y, x[names]).fit(disp=0, tol=1e-12)
            assert fit["n"] == len(y) and fit["n_positive"] == int(y.sum()), name  # the complete training cases
            np.testing.assert_allclose([c["coef"] for c in fit["columns"]], pooled.params.to_numpy(), rtol=1e-6, atol=1e-9, err_msg=name)
            np.testing.assert_allclose([c["se"] for c in fit["columns"]], pooled.bse.to_numpy(), rtol=1e-6, err_msg=name)
            np.testing.assert_allclose([c["p"] for c in fit["columns"]], pooled.pvalues.to_numpy(), rtol=1e-5, err_msg=name)
            assert fit["loglik"] == pytest.approx(pooled.llf, rel=1e-9) and fit["aic"] == pytest.approx(pooled.aic, rel=1e-9)

    def test_table1_counts_every_case_of_every_site_with_the_small_cell_rule(self, combined: ClinicalRun) -> None:
        rows = {r["variable"]: r for r in combined.clinical["table1"]["rows"]}
        assert set(rows) == {"age", "tumor_size_mm", "her2", "histologic_type", "histologic_grade"}  # readers are not covariates
        manifest = pd.read_csv(combined.sites[1].parent / "manifest.csv", dtype=str)
        her2 = rows["her2"]["sites"]["b"]
        for level in ("0", "1"):
            count = int((manifest["her2"] == level).sum())
            assert her2[level] == (f"<5" if 0 < count < 5 else f"{count} ({100 * count / len(manifest):.1f}%)")
        ages = pd.read_csv(combined.sites[0].parent / "manifest.csv")["age"]
        assert rows["age"]["sites"]["a"]["n"] == ages.notna().sum() and rows["age"]["missing"]["a"] == 3
        assert rows["age"]["sites"]["a"]["mean"] == pytest.approx(ages.mean(), rel=1e-12)
        assert rows["age"]["sites"]["a"]["sd"] == pytest.approx(ages.std(), rel=1e-9)
        assert rows["histologic_type"]["test_cohorts"] in ("chi-square", "Fisher") and 0 <= rows["histologic_type"]["p_groups"] <= 1

    def test_the_models_are_evaluated_at_every_site_and_compared_with_the_image_model(self, combined: ClinicalRun) -> None:
        rows = {(r["model"], r["site"], r["split"]) for r in combined.report["classification"]}
        for model in ("combined", "clinical", "federated"):
            assert {(model, s, "test") for s in ("a", "b", "c", "ext")} <= rows, model
        pairs = {(c["site"], c["model_a"], c["model_b"]) for c in combined.report["comparisons"]}
        assert {("ext", "combined", "federated"), ("ext", "clinical", "federated"), ("ext", "combined", "clinical")} <= pairs
        ext = next(c for c in combined.report["comparisons"] if (c["site"], c["model_a"], c["model_b"]) == ("ext", "combined", "federated"))
        assert 0 <= ext["delong_p"] <= 1 and "idi" in ext and "nri" in ext
        readers = {(r["site"], r["reader"]) for r in combined.clinical["reader_rows"]}
        assert readers == {(s, r) for s in ("a", "b", "c", "ext") for r in ("reader_call", "reader_score")}
        score = next(r for r in combined.clinical["reader_rows"] if (r["site"], r["reader"]) == ("ext", "reader_score"))
        assert 0.5 < score["auc"] <= 1 and score["kappa_se"] > 0 and "mcnemar_sensitivity_p" in score

    def test_the_report_shows_table1_the_or_tables_the_readers_and_the_nomogram(self, combined: ClinicalRun) -> None:
        md = (combined.run_dir / "report.md").read_text()
        for heading in ("### Table 1", "### Logistic regression: odds ratios", "### Readers against the model"):
            assert heading in md
        html = (combined.run_dir / "report.html").read_text()
        assert 'id="nomogram"' in html and 'alt="Nomogram of the combined model"' in html
        assert (combined.run_dir / "figures" / "nomogram.png").read_bytes().startswith(b"\x89PNG")
        assert combined.report["clinical"]["nomogram"]["coef"].keys() == {c["variable"] for c in combined.clinical["multivariable"]["combined"]["columns"]}
        assert "bins" not in combined.report["clinical"]["table1"]["rows"][0]

    def test_every_clinical_reply_held_only_the_aggregates_its_request_fixed(self, combined: ClinicalRun) -> None:
        allowed: dict[str, set[int | None]] = {}  # each metric name's lengths over the requests (None: a number)
        for message in combined.grid.sent:
            if message.metadata.message_type == CLINICAL:
                for key, length in ClinicalQuery.of(message.content).allowed_metrics().items():
                    allowed.setdefault(key, set()).add(length)
        seen = 0
        for path in combined.sites:
            for entry in map(json.loads, audit_path(load_site_config(path).output_dir).read_text().splitlines()):
                metrics = entry["records"].get("metrics")
                if metrics is None or not any("/" in k or "|" in k for k in metrics["values"]):
                    continue
                seen += 1
                assert entry["blocked"] == [], entry["blocked"]
                for key, value in metrics["values"].items():
                    if key in allowed:  # a clinical reply (the image evaluation's replies are audited elsewhere)
                        assert (len(value) if isinstance(value, list) else None) in allowed[key], key
        assert seen > 20


def test_a_site_refusing_small_cells_is_left_out_and_the_fusion_models_are_fitted_without_it(tmp_path: Path) -> None:
    strict = "privacy:\n  min_cell_count: 200\n"
    sites = [
        make_site(tmp_path, "a", n=36, seed=1, rows=_clinical_rows(1), data_yaml=DECLARED),
        make_site(tmp_path, "b", n=36, seed=2, rows=_clinical_rows(2), data_yaml=DECLARED),
        make_site(tmp_path, "c", n=20, seed=3, rows=_clinical_rows(3), data_yaml=DECLARED, extra_yaml=strict),
        make_site(tmp_path, "ext", role="external", n=24, seed=4, rows=_clinical_rows(4), data_yaml=DECLARED),
    ]
    cfg = _cfg(tmp_path, num_rounds=1, clinical="fusion", clinical_screen_p=0.5, clinical_folds=3, readers="reader_call,reader_score")
    run_dir = run_federation(LoopbackGrid(sites), cfg)  # type: ignore[arg-type]
    clinical = json.loads((run_dir / "clinical.json").read_text())
    assert "min_cell_count=200" in clinical["excluded"]["c"] and clinical["training_sites"] == ["a", "b"]
    assert "stopped" not in clinical, clinical.get("stopped")
    counts = clinical["selection"]["counts"]
    assert counts["start"] == 7 and counts["start"] >= counts["univariate"] >= counts["correlation"] >= counts["lasso"]
    assert set(clinical["models"]) >= {"deep", "pre-fusion"} and clinical["selection"]["folds"] <= 3
    rows = {(r["model"], r["site"]) for r in json.loads((run_dir / "report.json").read_text())["classification"] if r["split"] == "test"}
    assert {(m, "ext") for m in clinical["models"]} <= rows
    assert "### Feature selection (as seed 004)" in (run_dir / "report.md").read_text()


def test_a_run_config_the_sites_columns_cannot_serve_stops_before_any_training(tmp_path: Path) -> None:
    from server.federation import FederationError

    sites = [make_site(tmp_path, name, n=12, seed=i, rows=_clinical_rows(i), data_yaml=DECLARED) for i, name in enumerate("ab")]
    grid = LoopbackGrid(sites)
    with pytest.raises(FederationError, match="readers.*no site has a typed column biopsy_call.*nothing was trained"):
        run_federation(grid, _cfg(tmp_path, clinical="combined", readers="reader_call,biopsy_call"))  # type: ignore[arg-type]
    assert {m.metadata.message_type for m in grid.sent} == {"query", CLINICAL}  # the handshake and the schemas: no training
