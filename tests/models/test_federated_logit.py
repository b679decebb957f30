"""Exact federated logistic regression against statsmodels' pooled fit of the same rows."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm

from models.federated_logit import INTERCEPT, SeparationError, backward_aic, fit_logit, site_statistics

NAMES = (INTERCEPT, "signature", "age", "her2", "idc", "noise")


def _cohort(n: int = 420, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A design (intercept, a score, age, two binaries, a useless variable) and outcomes from a known logistic model."""
    rng = np.random.default_rng(seed)
    signature = rng.normal(0, 1, n)
    age = rng.normal(55, 11, n)
    her2 = rng.binomial(1, 0.3, n)
    idc = rng.binomial(1, 0.7, n)
    noise = rng.normal(0, 1, n)
    x = np.column_stack([np.ones(n), signature, age, her2, idc, noise])
    eta = -1.0 + 1.4 * signature + 0.02 * (age - 55) + 0.8 * her2 - 0.5 * idc
    return x, rng.binomial(1, 1 / (1 + np.exp(-eta)))


def _federation(x: np.ndarray, y: np.ndarray, cuts: tuple[int, ...] = (90, 250)):
    """The summed statistics of three sites holding unequal shares of the rows."""
    shares = [(x[a:b], y[a:b]) for a, b in zip((0, *cuts), (*cuts, len(y)))]

    def statistics(beta: np.ndarray, columns: list[int]):
        total = None
        for xs, ys in shares:
            part = site_statistics(xs[:, columns], ys, beta)
            total = part if total is None else total + part
        return total

    return statistics


def test_the_federated_fit_equals_statsmodels_pooled_logit() -> None:
    x, y = _cohort()
    fit = fit_logit(_federation(x, y), NAMES)
    pooled = sm.Logit(y, x).fit(disp=0, method="newton", tol=1e-12)
    np.testing.assert_allclose(fit.coef, pooled.params, rtol=1e-6)
    np.testing.assert_allclose(fit.se, pooled.bse, rtol=1e-6)
    np.testing.assert_allclose(fit.p_values, pooled.pvalues, rtol=1e-6)
    np.testing.assert_allclose(fit.ci(), pooled.conf_int(), rtol=1e-6)
    assert fit.loglik == pytest.approx(pooled.llf, rel=1e-9) and fit.aic == pytest.approx(pooled.aic, rel=1e-9)
    table = fit.odds_ratios()
    assert [r["variable"] for r in table] == list(NAMES[1:])
    np.testing.assert_allclose([r["or"] for r in table], np.exp(pooled.params[1:]), rtol=1e-6)
    np.testing.assert_allclose([[r["ci_low"], r["ci_high"]] for r in table], np.exp(pooled.conf_int()[1:]), rtol=1e-6)


def test_a_univariable_fit_uses_only_its_columns() -> None:
    x, y = _cohort()
    fit = fit_logit(_federation(x, y), NAMES, [0, 3])
    pooled = sm.Logit(y, x[:, [0, 3]]).fit(disp=0)
    assert fit.names == (INTERCEPT, "her2")
    np.testing.assert_allclose(fit.coef, pooled.params, rtol=1e-6)


def test_backward_aic_makes_the_choices_a_pooled_stepwise_makes() -> None:
    x, y = _cohort()
    fit, steps = backward_aic(_federation(x, y), NAMES)
    current = list(range(len(NAMES)))
    expected = []
    while True:  # the same search on the pooled rows with statsmodels' AIC
        aic = sm.Logit(y, x[:, current]).fit(disp=0).aic
        trials = {c: sm.Logit(y, x[:, [k for k in current if k != c]]).fit(disp=0).aic for c in current if c != 0}
        best = min(trials, key=trials.get)
        if trials[best] >= aic:
            break
        current.remove(best)
        expected.append(NAMES[best])
    assert [s.dropped for s in steps[1:]] == expected and "signature" in fit.names
    assert fit.names == tuple(NAMES[c] for c in current)
    assert fit.aic == pytest.approx(sm.Logit(y, x[:, current]).fit(disp=0).aic, rel=1e-9)


def test_complete_separation_is_refused_naming_the_variable() -> None:
    rng = np.random.default_rng(1)
    score = rng.normal(0, 1, 60)
    x, y = np.column_stack([np.ones(60), score]), (score > 0).astype(int)
    with pytest.raises(SeparationError, match=r"completely separated .* Largest coefficients: signature"):
        fit_logit(_federation(x, y, (20, 40)), (INTERCEPT, "signature"))


def test_quasi_complete_separation_by_a_sparse_level_is_refused() -> None:
    x, y = _cohort(200, seed=2)
    x = x[:, [0, 1, 3]].copy()
    y = y.copy()
    y[x[:, 2] == 1] = 1  # every HER2-positive case is N+
    with pytest.raises(SeparationError, match=r"quasi-completely separated.*her2"):
        fit_logit(_federation(x, y, (60, 130)), (INTERCEPT, "signature", "her2"))


def test_one_class_and_collinear_designs_are_refused() -> None:
    x, y = _cohort(100)
    with pytest.raises(SeparationError, match="one class only"):
        fit_logit(_federation(x, np.zeros_like(y), (30, 60)), NAMES)
    twice = np.column_stack([x[:, :2], x[:, 1]])
    with pytest.raises(SeparationError, match="singular"):
        fit_logit(_federation(twice, y, (30, 60)), (INTERCEPT, "signature", "signature again"))
