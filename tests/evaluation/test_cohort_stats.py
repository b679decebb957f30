"""Cohort statistics from summed site statistics equal those of the pooled rows (scipy, statsmodels)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.outliers_influence import variance_inflation_factor

from evaluation.cohort_stats import (
    CrossMoments, Moments, categorical_test, level_counts, prune_correlated, shown_count, summed_counts, t_test, variance_inflation,
)  # fmt: skip

RNG = np.random.default_rng(0)
SITES = [RNG.normal(50, 10, 40), RNG.normal(55, 12, 75), RNG.normal(48, 9, 23)]


def test_moments_summed_over_sites_give_the_pooled_mean_sd_and_t_test() -> None:
    pooled = np.concatenate(SITES)
    total = Moments.of(SITES[0]) + Moments.of(SITES[1]) + Moments.of(SITES[2])
    assert total.mean == pytest.approx(pooled.mean(), rel=1e-12) and total.sd == pytest.approx(pooled.std(ddof=1), rel=1e-10)
    for equal_var in (True, False):
        expected = stats.ttest_ind(SITES[0], SITES[1], equal_var=equal_var)
        assert t_test(Moments.of(SITES[0]), Moments.of(SITES[1]), equal_var) == pytest.approx((expected.statistic, expected.pvalue), rel=1e-9)


def test_cross_moments_give_pooled_correlations_and_statsmodels_vif() -> None:
    x = RNG.normal(0, 1, (138, 4))
    x[:, 3] = 0.9 * x[:, 0] + 0.3 * x[:, 3]
    moments = CrossMoments.of(x[:40]) + CrossMoments.of(x[40:115]) + CrossMoments.of(x[115:])
    np.testing.assert_allclose(moments.correlation(), np.corrcoef(x, rowvar=False), atol=1e-12)
    design = np.column_stack([np.ones(len(x)), x])
    np.testing.assert_allclose(variance_inflation(moments), [variance_inflation_factor(design, j) for j in range(1, 5)], rtol=1e-8)


def test_correlation_pruning_keeps_the_more_significant_of_each_correlated_pair() -> None:
    corr = np.array([[1.0, 0.8, 0.1], [0.8, 1.0, -0.2], [0.1, -0.2, 1.0]])
    kept, dropped = prune_correlated(["radiomic", "deep", "age"], corr, [0.03, 0.001, 0.2])
    assert kept == ["deep", "age"] and dropped == [("radiomic", "deep", 0.8)]


def test_contingency_tests_on_summed_counts_and_the_small_cell_rule() -> None:
    levels = ["IDC", "ILC", "other"]
    a = level_counts(["IDC"] * 30 + ["ILC"] * 4 + ["other"] * 6, levels)
    b = level_counts(["IDC"] * 20 + ["other"] * 12, levels)
    table = summed_counts([a, b], levels)
    chi2, p, dof, _ = stats.chi2_contingency(table, correction=False)
    assert categorical_test(table) == {"test": "chi-square", "statistic": pytest.approx(chi2), "dof": dof, "p": pytest.approx(p)}
    small = np.array([[8, 2], [1, 9]])
    assert categorical_test(small) == {"test": "fisher", "p": pytest.approx(stats.fisher_exact(small)[1])}
    assert [shown_count(c, 40) for c in (30, 4, 0)] == ["30 (75.0%)", "<5", "0 (0.0%)"]
    with pytest.raises(ValueError, match="'lobular' is not one of the harmonised levels"):
        level_counts(["lobular"], levels)
