"""Tests for DeLong AUC, variance, confidence interval and paired test."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from evaluation.delong import AucResult, auc_score, delong_auc, delong_test


def _brute_force_delong(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """O(m*n) DeLong (1988): AUC and variance from explicit structural components."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10 = psi.mean(axis=1)
    v01 = psi.mean(axis=0)
    variance = v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size
    return float(psi.mean()), float(variance)


def _brute_force_diff_variance(labels: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """O(m*n) DeLong variance of AUC_a - AUC_b via the 2x2 covariance of components."""
    comps = []
    for s in (a, b):
        pos, neg = s[labels == 1], s[labels == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        comps.append((psi.mean(axis=1), psi.mean(axis=0)))
    s10 = np.cov(np.vstack([comps[0][0], comps[1][0]]))
    s01 = np.cov(np.vstack([comps[0][1], comps[1][1]]))
    cov = s10 / comps[0][0].size + s01 / comps[0][1].size
    return float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])


def _hanley_mcneil() -> tuple[np.ndarray, np.ndarray]:
    """Hanley & McNeil (1982) rating data: 58 normal and 51 abnormal cases on a 5-point scale."""
    neg = np.repeat([1, 2, 3, 4, 5], [33, 6, 6, 11, 2])
    pos = np.repeat([1, 2, 3, 4, 5], [3, 2, 2, 11, 33])
    return np.r_[np.zeros(58, dtype=int), np.ones(51, dtype=int)], np.r_[neg, pos].astype(float)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_auc_matches_sklearn_with_ties(seed: int) -> None:
    """AUC equals scikit-learn's on data with many tied scores."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 150)
    s = np.round(rng.normal(y * 0.8, 1.0), 1)
    assert len(np.unique(s)) < s.size  # ties present
    assert delong_auc(y, s).auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert auc_score(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_variance_matches_brute_force(seed: int) -> None:
    """Fast midrank variance equals the O(m*n) structural-component variance."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 120)
    s = np.round(rng.normal(y * 1.0, 1.0), 1)
    auc, variance = _brute_force_delong(y, s)
    result = delong_auc(y, s)
    assert result.auc == pytest.approx(auc, abs=1e-12)
    assert result.variance == pytest.approx(variance, rel=1e-10)


def test_hanley_mcneil_reference() -> None:
    """Published AUC 0.893 is reproduced; DeLong SE checked against the brute force (0.0307).

    Compared numbers: AUC to 3 decimals against the published 0.893. The DeLong SE
    (what pROC's ``var(roc(..))`` computes: unbiased sample variances of the
    structural components) is 0.03072 here, asserted against the brute-force
    implementation above and to 4 decimals. The SE of ~0.0326 quoted alongside 0.893
    is Hanley & McNeil's own exponential approximation (Q1 = A/(2-A),
    Q2 = 2A^2/(1+A)), not DeLong's; it is reproduced separately below.
    """
    y, s = _hanley_mcneil()
    result = delong_auc(y, s)
    assert round(result.auc, 3) == 0.893
    _, brute_variance = _brute_force_delong(y, s)
    assert result.variance == pytest.approx(brute_variance, rel=1e-12)
    assert np.sqrt(result.variance) == pytest.approx(0.0307, abs=5e-5)
    a, n_a, n_n = 0.893, 51, 58
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    se_hm = np.sqrt((a * (1 - a) + (n_a - 1) * (q1 - a * a) + (n_n - 1) * (q2 - a * a)) / (n_a * n_n))
    assert se_hm == pytest.approx(0.0326, abs=5e-4)


def test_ci_is_normal_interval_clipped() -> None:
    """CI is auc +/- z*se and is clipped to [0, 1]."""
    y, s = _hanley_mcneil()
    result = delong_auc(y, s, level=0.95)
    se = np.sqrt(result.variance)
    assert result.ci[0] == pytest.approx(result.auc - 1.959963984540054 * se, abs=1e-12)
    assert result.ci[1] == pytest.approx(result.auc + 1.959963984540054 * se, abs=1e-12)
    narrow = delong_auc(y, s, level=0.5)
    assert narrow.ci[0] > result.ci[0] and narrow.ci[1] < result.ci[1]
    near_perfect = delong_auc([0, 0, 0, 1, 1, 1], [0.1, 0.2, 0.7, 0.6, 0.8, 0.9])
    assert near_perfect.ci[1] == 1.0
    assert isinstance(near_perfect, AucResult)


@pytest.mark.parametrize(
    ("labels", "scores"),
    [
        ([0, 1, 2, 1], [0.1, 0.2, 0.3, 0.4]),
        ([0, 0, 0, 0], [0.1, 0.2, 0.3, 0.4]),
        ([0, 1, 0, 1], [0.1, 0.2, 0.3]),
        ([0, 1, 0, 1], [0.1, np.nan, 0.3, 0.4]),
        ([0, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]),
    ],
)
def test_invalid_inputs_raise(labels: list[int], scores: list[float]) -> None:
    """Non-binary labels, a missing class, a singleton class, length mismatch or NaN raise."""
    with pytest.raises(ValueError):
        delong_auc(labels, scores)


def test_invalid_level_raises() -> None:
    """Confidence level outside (0, 1) raises."""
    with pytest.raises(ValueError):
        delong_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], level=1.0)


def test_identical_predictors_give_p_one() -> None:
    """Identical (and rank-equivalent) score vectors give z = 0 and p = 1 (documented choice)."""
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 100)
    s = rng.normal(y, 1.0)
    assert delong_test(y, s, s) == (0.0, 1.0)
    assert delong_test(y, s, np.exp(s)) == (0.0, 1.0)


def test_paired_variance_matches_brute_force() -> None:
    """The z statistic uses the brute-force variance of the AUC difference."""
    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, 80)
    a = np.round(rng.normal(y * 1.5, 1.0), 1)
    b = np.round(rng.normal(y * 0.5, 1.0), 1)
    z, p = delong_test(y, a, b)
    expected_z = (roc_auc_score(y, a) - roc_auc_score(y, b)) / np.sqrt(_brute_force_diff_variance(y, a, b))
    assert z == pytest.approx(expected_z, rel=1e-10)
    assert 0.0 <= p <= 1.0


def test_strongly_better_predictor_is_significant() -> None:
    """A strong vs a weak predictor on n=200 gives p < 0.01 with positive z."""
    rng = np.random.default_rng(2024)
    y = rng.integers(0, 2, 200)
    strong = y * 2.0 + rng.normal(0.0, 1.0, 200)
    weak = y * 0.3 + rng.normal(0.0, 1.0, 200)
    z, p = delong_test(y, strong, weak)
    assert z > 0 and p < 0.01
    z_rev, p_rev = delong_test(y, weak, strong)
    assert z_rev == pytest.approx(-z) and p_rev == pytest.approx(p)


def test_within_class_permutation_is_not_significant() -> None:
    """Permuting scores within each class keeps the AUC, so p > 0.05 (here p = 1)."""
    for seed in range(10):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 2, 200)
        s = y * 1.0 + rng.normal(0.0, 1.0, 200)
        permuted = s.copy()
        for cls in (0, 1):
            idx = np.flatnonzero(y == cls)
            permuted[idx] = rng.permutation(s[idx])
        _, p = delong_test(y, s, permuted)
        assert p > 0.05


def test_equally_good_predictor_is_rarely_significant() -> None:
    """An independent copy of the same predictor model gives p > 0.05 in most of 20 seeds."""
    not_significant = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 2, 200)
        a = y * 1.0 + rng.normal(0.0, 1.0, 200)
        b = y * 1.0 + rng.normal(0.0, 1.0, 200)
        not_significant += delong_test(y, a, b)[1] > 0.05
    assert not_significant >= 16
