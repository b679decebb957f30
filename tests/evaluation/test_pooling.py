"""Rows re-cut and pooled from aggregates equal the per-case computation."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.classification import binary_metrics
from evaluation.pooling import THRESHOLD_KEYS, at_threshold, pooled_metrics
from evaluation.thresholds import score_histograms, threshold_from_scores


def _site(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, dict]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1)
    metrics = binary_metrics(labels, scores, 0.5)
    metrics["hist_pos"], metrics["hist_neg"] = score_histograms(labels, scores)
    return labels, scores, metrics


@pytest.mark.parametrize("seed", range(5))
def test_recut_at_a_threshold_equals_evaluating_at_it(seed: int) -> None:
    labels, scores, metrics = _site(seed, 80)
    threshold = threshold_from_scores(labels, scores)
    expected = binary_metrics(labels, scores, threshold)
    recut = at_threshold(metrics, threshold)
    for key in THRESHOLD_KEYS:
        assert recut.get(key) == pytest.approx(expected.get(key)), key
    assert set(k for k in recut if k in THRESHOLD_KEYS) == set(k for k in expected if k in THRESHOLD_KEYS)
    assert recut["auc"] == metrics["auc"]  # threshold-free values are kept


def test_pooled_counts_equal_the_union_of_cases() -> None:
    sites = [_site(s, n) for s, n in ((1, 40), (2, 70), (3, 55))]
    pooled = pooled_metrics([m for _, _, m in sites])
    union = binary_metrics(np.concatenate([y for y, _, _ in sites]), np.concatenate([s for _, s, _ in sites]), 0.5)
    for key in ("n", "n_positive", "tp", "fp", "tn", "fn", "sensitivity", "specificity", "ppv", "npv", "f1", "kappa"):
        assert pooled[key] == pytest.approx(union[key]), key
    assert pooled["brier"] == pytest.approx(union["brier"])
    assert abs(pooled["auc"] - union["auc"]) < 0.01  # bin-centre resolution 0.005
