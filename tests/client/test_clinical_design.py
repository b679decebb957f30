"""A site's clinical design matrix: its coding, complete cases, and a federated fit equal to a pooled formula fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from client.clinical import ClinicalVariable
from client.clinical_design import column_names, design_matrix
from client.manifest import Case
from models.federated_logit import fit_logit, site_statistics

VARIABLES = (
    ClinicalVariable("age", "continuous"),
    ClinicalVariable("her2", "binary", ("0", "1")),
    ClinicalVariable("histologic_type", "categorical", ("IDC", "ILC", "other")),
    ClinicalVariable("histologic_grade", "ordinal", ("1", "2", "3")),
)


def _site(seed: int, n: int) -> tuple[list[Case], np.ndarray]:
    rng = np.random.default_rng(seed)
    cases, signature = [], rng.normal(0, 1, n)
    for i in range(n):
        age, her2 = rng.normal(55, 10), int(rng.random() < 0.3)
        kind, grade = rng.choice(["IDC", "ILC", "other"], p=[0.7, 0.15, 0.15]), int(rng.integers(1, 4))
        eta = -0.5 + 1.2 * signature[i] + 0.7 * her2 + 0.3 * (grade - 2) - 0.02 * (age - 55) + (0.4 if kind == "ILC" else 0.0)
        label = int(rng.random() < 1 / (1 + np.exp(-eta)))
        clinical = {"age": f"{age:.1f}", "her2": str(her2), "histologic_type": str(kind), "histologic_grade": str(grade)}
        cases.append(Case(f"s{seed}-{i}", label, i + 2, Path("x.png"), clinical=clinical))
    return cases, signature


def test_columns_are_coded_with_a_reference_level_and_an_ordinal_rank() -> None:
    assert column_names(VARIABLES) == ("intercept", "age", "her2", "histologic_type[ILC]", "histologic_type[other]", "histologic_grade")
    cases, _ = _site(0, 3)
    design = design_matrix(cases[:1], VARIABLES)
    value = cases[0].clinical
    assert design.x[0, 0] == 1.0 and design.x[0, 1] == float(value["age"])
    assert design.x[0, 5] == float(VARIABLES[3].levels.index(value["histologic_grade"]))
    assert design.x[0, 3:5].tolist() == [float(value["histologic_type"] == "ILC"), float(value["histologic_type"] == "other")]


def test_rows_with_a_missing_value_are_left_out_and_named() -> None:
    cases, signature = _site(1, 6)
    cases[2] = Case(cases[2].case_id, cases[2].label, cases[2].row, cases[2].image, clinical=cases[2].clinical | {"age": "not available"})
    signature[4] = np.nan
    design = design_matrix(cases, VARIABLES, {"signature": signature})
    assert design.left_out == (4, 6) and design.x.shape == (4, 7) and design.names[-1] == "signature"


def test_three_sites_designs_fit_federated_as_a_pooled_formula_fit() -> None:
    sites = [_site(seed, n) for seed, n in ((2, 150), (3, 90), (4, 210))]
    designs = [design_matrix(cases, VARIABLES, {"signature": signature}) for cases, signature in sites]

    def statistics(beta: np.ndarray, columns: list[int]):
        total = None
        for d in designs:
            part = site_statistics(d.x[:, columns], d.y, beta)
            total = part if total is None else total + part
        return total

    fit = fit_logit(statistics, designs[0].names)
    frame = pd.DataFrame([c.clinical | {"y": c.label, "signature": s} for cases, sig in sites for c, s in zip(cases, sig)])
    frame["age"] = frame["age"].astype(float)
    frame["her2"] = frame["her2"].astype(int)
    frame["grade_rank"] = frame["histologic_grade"].astype(int) - 1
    pooled = smf.logit("y ~ age + her2 + C(histologic_type, Treatment('IDC')) + grade_rank + signature", frame).fit(disp=0)
    kind = "C(histologic_type, Treatment('IDC'))"
    patsy = ["Intercept", "age", "her2", f"{kind}[T.ILC]", f"{kind}[T.other]", "grade_rank", "signature"]  # in our column order
    np.testing.assert_allclose(fit.coef, pooled.params[patsy].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(fit.se, pooled.bse[patsy].to_numpy(), rtol=1e-6)
    assert fit.n == len(frame) == 450 and fit.loglik == pytest.approx(pooled.llf, rel=1e-10)
