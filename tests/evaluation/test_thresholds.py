"""Tests for histogram aggregation and histogram-based operating points."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.thresholds import (
    HIST_BINS,
    pool_histograms,
    score_histograms,
    threshold_from_histograms,
    threshold_from_scores,
)


def _data(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping random probabilities with binary labels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return y, np.clip(rng.normal(0.35 + 0.3 * y, 0.15), 0.0, 1.0)


def _rates(y: np.ndarray, s: np.ndarray, threshold: float) -> tuple[float, float, int]:
    """Sensitivity, specificity and false positives at ``score >= threshold``."""
    pred = s >= threshold
    fp = int(np.sum(pred & (y == 0)))
    return float(np.mean(pred[y == 1])), 1.0 - fp / int(np.sum(y == 0)), fp


def test_histograms_sum_to_counts_and_place_edges() -> None:
    """Histogram totals equal class counts; 0.0 goes in the first bin and 1.0 in the last."""
    y, s = _data(0)
    s[:4] = [0.0, 1.0, 0.5, 0.005]
    pos, neg = score_histograms(y, s)
    assert len(pos) == len(neg) == HIST_BINS
    assert sum(pos) == int(y.sum()) and sum(neg) == int((1 - y).sum())
    assert all(type(c) is int for c in pos + neg)
    p4, n4 = score_histograms([0, 1, 1, 0], [0.0, 1.0, 0.5, 0.49], bins=4)
    assert p4 == [0, 0, 1, 1] and n4 == [1, 1, 0, 0]


def test_histograms_reject_out_of_range_scores() -> None:
    """Scores outside [0, 1] cannot be histogrammed."""
    with pytest.raises(ValueError):
        score_histograms([0, 1], [0.2, 1.2])


def test_pooling_equals_union() -> None:
    """Pooling two sites' histograms equals histogramming the union of their cases."""
    y1, s1 = _data(1, 120)
    y2, s2 = _data(2, 80)
    pooled = pool_histograms([score_histograms(y1, s1), score_histograms(y2, s2)])
    assert pooled == score_histograms(np.r_[y1, y2], np.r_[s1, s2])


def test_pooling_rejects_mismatch() -> None:
    """Pooling histograms of different lengths (or none) raises."""
    with pytest.raises(ValueError):
        pool_histograms([([1, 2], [3, 4]), ([1, 2, 3], [3, 4, 5])])
    with pytest.raises(ValueError):
        pool_histograms([([1, 2], [3])])
    with pytest.raises(ValueError):
        pool_histograms([])


def test_youden_separable_is_perfect() -> None:
    """On separable data Youden gives sensitivity = specificity = 1, centred in the gap."""
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(50, dtype=int), np.ones(50, dtype=int)]
    s = np.r_[rng.uniform(0.05, 0.3, 50), rng.uniform(0.7, 0.95, 50)]
    threshold = threshold_from_scores(y, s, "youden")
    sens, spec, _ = _rates(y, s, threshold)
    assert sens == 1.0 and spec == 1.0
    assert 0.4 <= threshold <= 0.6  # middle of the optimal run of edges in the empty gap


def test_tie_break_takes_middle_of_run() -> None:
    """An optimal run of edges 1..3 (bins 1..2 empty) resolves to its middle, edge 2."""
    pos = [0, 0, 0, 5, 0]
    neg = [5, 0, 0, 0, 0]
    assert threshold_from_histograms(pos, neg, "youden") == pytest.approx(2 / 5)
    assert threshold_from_histograms(pos, neg, "accuracy") == pytest.approx(2 / 5)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_specificity_target_one_has_no_false_positives(seed: int) -> None:
    """The specificity rule with target 1.0 yields zero false positives on its own data."""
    y, s = _data(seed)
    s = np.minimum(s, 0.99)  # keep the last bin free of negatives so the target is reachable
    threshold = threshold_from_scores(y, s, "specificity", 1.0)
    _, spec, fp = _rates(y, s, threshold)
    assert fp == 0 and spec == 1.0
    edges = np.arange(HIST_BINS) / HIST_BINS
    lowest = min(e for e in edges if _rates(y, s, e)[2] == 0)
    assert _rates(y, s, threshold)[0] == _rates(y, s, lowest)[0]  # same operating point as the lowest edge


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_sensitivity_target(seed: int) -> None:
    """The sensitivity rule with target 0.9 reaches sensitivity >= 0.9 at the best specificity."""
    y, s = _data(seed)
    threshold = threshold_from_scores(y, s, "sensitivity", 0.9)
    sens, _, _ = _rates(y, s, threshold)
    assert sens >= 0.9
    edges = np.arange(HIST_BINS) / HIST_BINS
    highest = max(e for e in edges if _rates(y, s, e)[0] >= 0.9)
    assert _rates(y, s, threshold)[1] == _rates(y, s, highest)[1]  # same operating point as the highest edge


def test_specificity_unreachable_raises() -> None:
    """A negative in the last bin makes specificity 1.0 unreachable."""
    with pytest.raises(ValueError):
        threshold_from_histograms([1, 1], [1, 1], "specificity", 1.0)


@pytest.mark.parametrize(
    ("rule", "target"),
    [("youden", None), ("accuracy", None), ("sensitivity", 0.9), ("specificity", 0.8), ("sensitivity", 0.7)],
)
def test_scores_path_equals_histogram_path(rule: str, target: float | None) -> None:
    """threshold_from_scores equals threshold_from_histograms(score_histograms(...))."""
    y, s = _data(9)
    pos, neg = score_histograms(y, s)
    assert threshold_from_scores(y, s, rule, target) == threshold_from_histograms(pos, neg, rule, target)


def test_target_ignored_by_optimising_rules() -> None:
    """youden/accuracy ignore a placeholder target such as the run config's 0.0."""
    y, s = _data(6)
    assert threshold_from_scores(y, s, "youden", 0.0) == threshold_from_scores(y, s, "youden")
    assert threshold_from_scores(y, s, "accuracy", 0.0) == threshold_from_scores(y, s, "accuracy")


def test_accuracy_rule_maximises_accuracy() -> None:
    """No candidate edge beats the accuracy-rule threshold on its own data."""
    y, s = _data(4)
    threshold = threshold_from_scores(y, s, "accuracy")
    best = np.mean((s >= threshold) == (y == 1))
    edges = np.arange(HIST_BINS) / HIST_BINS
    assert all(np.mean((s >= e) == (y == 1)) <= best + 1e-12 for e in edges)


@pytest.mark.parametrize(
    ("pos", "neg", "rule", "target"),
    [
        ([0, 0], [1, 2], "youden", None),
        ([1, 2], [0, 0], "youden", None),
        ([1, 2], [2, 1], "median", None),
        ([1, 2], [2, 1], "sensitivity", None),
        ([1, 2], [2, 1], "specificity", 1.5),
        ([1, 2], [2, 1, 0], "youden", None),
        ([1, -2], [2, 1], "youden", None),
    ],
)
def test_invalid_inputs_raise(pos: list[int], neg: list[int], rule: str, target: float | None) -> None:
    """Empty class, unknown rule, bad target, length mismatch or negative counts raise."""
    with pytest.raises(ValueError):
        threshold_from_histograms(pos, neg, rule, target)
