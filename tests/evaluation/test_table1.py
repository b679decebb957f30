"""Table 1 from summed site statistics: exact moments and tests, medians within a bin, the small-cell rule."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from evaluation.cohort_stats import Moments, level_counts
from evaluation.table1 import ContinuousCell, categorical_rows, continuous_rows, histogram_quantile, one_way_anova

EDGES = np.linspace(20, 90, 71)  # 1-year bins for age
RNG = np.random.default_rng(0)
AGES = {  # site -> label group -> values
    "a": {0: RNG.normal(52, 10, 60), 1: RNG.normal(49, 9, 30)},
    "b": {0: RNG.normal(56, 11, 45), 1: RNG.normal(50, 10, 25)},
    "c": {0: RNG.normal(54, 8, 20), 1: RNG.normal(47, 12, 14)},
}


def _cell(values: np.ndarray) -> ContinuousCell:
    return ContinuousCell(Moments.of(values), np.histogram(values, EDGES)[0])


def test_continuous_rows_equal_the_pooled_statistics() -> None:
    entry = continuous_rows("age", {s: {g: _cell(v) for g, v in groups.items()} for s, groups in AGES.items()}, EDGES)
    pooled = np.concatenate([v for groups in AGES.values() for v in groups.values()])
    assert entry["overall"]["mean"] == pytest.approx(pooled.mean()) and entry["overall"]["sd"] == pytest.approx(pooled.std(ddof=1))
    assert abs(entry["overall"]["median"] - np.median(pooled)) <= 1.0  # within one bin width
    assert abs(entry["overall"]["q3"] - np.percentile(pooled, 75)) <= 1.0
    by_site = [np.concatenate(list(groups.values())) for groups in AGES.values()]
    assert entry["p_cohorts"] == pytest.approx(stats.f_oneway(*by_site).pvalue) and entry["test_cohorts"] == "ANOVA"
    n0 = np.concatenate([groups[0] for groups in AGES.values()])
    n1 = np.concatenate([groups[1] for groups in AGES.values()])
    assert entry["p_groups"] == pytest.approx(stats.ttest_ind(n0, n1).pvalue)
    assert entry["groups"]["1"]["n"] == 69 and entry["sites"]["b"]["n"] == 70


def test_two_cohorts_are_compared_by_t_test_and_anova_agrees_with_scipy() -> None:
    two = {s: {g: _cell(v) for g, v in AGES[s].items()} for s in ("a", "b")}
    entry = continuous_rows("age", two, EDGES)
    a, b = (np.concatenate(list(AGES[s].values())) for s in ("a", "b"))
    assert entry["test_cohorts"] == "t-test" and entry["p_cohorts"] == pytest.approx(stats.ttest_ind(a, b).pvalue)
    assert one_way_anova([Moments.of(a), Moments.of(b)]) == pytest.approx(tuple(stats.f_oneway(a, b)))


def test_histogram_quantile_interpolates_within_a_bin() -> None:
    assert histogram_quantile(np.array([0.0, 10.0, 20.0]), np.array([5, 5]), 0.5) == pytest.approx(10.0)
    assert histogram_quantile(np.array([0.0, 10.0, 20.0]), np.array([4, 0]), 0.25) == pytest.approx(2.5)


def test_categorical_rows_show_small_cells_and_test_the_summed_counts() -> None:
    levels = ["IDC", "ILC", "other"]
    sites = {
        "a": {0: level_counts(["IDC"] * 40 + ["ILC"] * 3 + ["other"] * 7, levels), 1: level_counts(["IDC"] * 25 + ["ILC"] * 5, levels)},
        "b": {0: level_counts(["IDC"] * 30 + ["other"] * 10, levels), 1: level_counts(["IDC"] * 20 + ["ILC"] * 2 + ["other"] * 3, levels)},
    }
    entry = categorical_rows("histologic_type", sites, levels)
    assert entry["sites"]["a"] == {"IDC": "65 (81.2%)", "ILC": "8 (10.0%)", "other": "7 (8.8%)"}
    assert entry["sites"]["b"]["ILC"] == "<5" and entry["small_cell"] == 5
    table = np.array([[65, 8, 7], [50, 2, 13]])
    assert entry["p_cohorts"] == pytest.approx(stats.chi2_contingency(table, correction=False)[1]) and entry["test_cohorts"] == "chi-square"
    assert categorical_rows("histologic_type", sites, levels, k=10)["sites"]["a"]["ILC"] == "<10"
