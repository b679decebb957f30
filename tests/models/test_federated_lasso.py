"""Federated L1-penalised logistic regression against scikit-learn's on the pooled rows; site-stratified CV."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from models.federated_lasso import cross_validated_lasso, fit_lasso, lambda_max
from models.federated_logit import INTERCEPT, site_statistics

NAMES = (INTERCEPT, "a", "b", "c", "d", "e", "f")


def _cohort(n: int = 360, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1, (n, 6))
    z[:, 3] = 0.8 * z[:, 0] + 0.6 * z[:, 3]  # d correlates with a
    eta = -0.4 + 1.2 * z[:, 0] - 0.8 * z[:, 1] + 0.3 * z[:, 2]
    return np.column_stack([np.ones(n), z]), rng.binomial(1, 1 / (1 + np.exp(-eta)))


def _sites(x: np.ndarray, y: np.ndarray, cuts: tuple[int, ...] = (100, 220)) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x[a:b], y[a:b]) for a, b in zip((0, *cuts), (*cuts, len(y)))]


def _sum(shares: list[tuple[np.ndarray, np.ndarray]]):
    def statistics(beta: np.ndarray, columns: list[int]):
        parts = [site_statistics(xs[:, columns], ys, beta) for xs, ys in shares if len(ys)]
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total

    return statistics


def _sklearn(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    model = LogisticRegression(l1_ratio=1.0, C=1.0 / lam, solver="saga", tol=1e-12, max_iter=200_000).fit(x[:, 1:], y)
    return np.concatenate([model.intercept_, model.coef_[0]])


@pytest.mark.parametrize("fraction", [0.5, 0.15, 0.02])
def test_the_federated_lasso_equals_scikit_learns_pooled_fit(fraction: float) -> None:
    x, y = _cohort()
    statistics = _sum(_sites(x, y))
    lam = fraction * lambda_max(statistics, NAMES)
    fit = fit_lasso(statistics, NAMES, lam)
    np.testing.assert_allclose(fit.coef, _sklearn(x, y, lam), atol=2e-5)
    assert set(fit.selected) <= set(NAMES[1:]) and (fraction < 0.5 or "a" in fit.selected)


def test_lambda_max_drops_every_variable_and_just_below_it_one_enters() -> None:
    x, y = _cohort()
    statistics = _sum(_sites(x, y))
    top = lambda_max(statistics, NAMES)
    assert fit_lasso(statistics, NAMES, top * 1.0001).selected == ()
    assert fit_lasso(statistics, NAMES, top * 0.97).selected == ("a",)


def test_site_stratified_cross_validation_chooses_a_penalty_that_keeps_the_true_signals() -> None:
    x, y = _cohort(600, seed=3)
    sites = _sites(x, y, (150, 380))
    k = 5
    folds = []
    for xs, ys in sites:  # each site folds its own rows, stratified by label
        order = np.argsort(np.random.default_rng(1).random(len(ys)))
        fold_of = np.empty(len(ys), dtype=int)
        for label in (0, 1):
            members = order[ys[order] == label]
            fold_of[members] = np.arange(members.size) % k
        folds.append(fold_of)

    def fold(index: int, held_out: bool):
        return _sum([(xs[(f == index) == held_out], ys[(f == index) == held_out]) for (xs, ys), f in zip(sites, folds)])

    path = cross_validated_lasso(fold, _sum(sites), NAMES, k)
    assert path.lambdas[0] > path.chosen > path.lambdas[-1]  # an interior minimum of the CV deviance
    assert path.cv_deviance.min() < path.cv_deviance[0]
    assert {"a", "b"} <= set(path.fit.selected)
