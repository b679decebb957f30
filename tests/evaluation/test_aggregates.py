"""Tests for ROC, DeLong AUC, decision curves and confusion counts from score histograms."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from evaluation.aggregates import (
    DCA_THRESHOLDS,
    auc_from_histograms,
    confusion_from_histograms,
    net_benefit_from_histograms,
    roc_from_histograms,
    treat_all_net_benefit,
)
from evaluation.delong import delong_auc
from evaluation.thresholds import HIST_BINS, bin_edges, score_histograms


def _binned_cases(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Random labels with scores placed on bin centres (so histograms lose nothing)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    raw = np.clip(rng.normal(0.4 + 0.2 * y, 0.2), 0.0, 1.0)
    k = np.minimum((raw * HIST_BINS).astype(int), HIST_BINS - 1)
    return y, (k + 0.5) / HIST_BINS


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_matches_sklearn_at_edges(seed: int) -> None:
    """Each edge's point equals sklearn's ROC point for the lowest score at or above the edge."""
    y, s = _binned_cases(seed)
    roc = roc_from_histograms(*score_histograms(y, s))
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    assert len(roc["fpr"]) == HIST_BINS + 1
    assert (roc["fpr"][0], roc["tpr"][0]) == (1.0, 1.0) and (roc["fpr"][-1], roc["tpr"][-1]) == (0.0, 0.0)
    assert np.all(np.diff(roc["fpr"]) <= 0) and np.all(np.diff(roc["tpr"]) <= 0)
    for k in range(HIST_BINS + 1):
        # sklearn's point for "score >= edge" is the one at the lowest score >= edge (index 0: none).
        at_or_above = np.flatnonzero(np.isfinite(thr) & (thr >= k / HIST_BINS))
        i = int(at_or_above[np.argmin(thr[at_or_above])]) if k < HIST_BINS and at_or_above.size else 0
        assert roc["fpr"][k] == pytest.approx(fpr[i], abs=1e-12)
        assert roc["tpr"][k] == pytest.approx(tpr[i], abs=1e-12)
    json.dumps(roc)


@pytest.mark.parametrize(("seed", "n"), [(0, 400), (1, 60), (2, 9)])
def test_auc_matches_delong_on_expanded_data(seed: int, n: int) -> None:
    """AUC, variance and CI equal delong_auc on the per-case bin-centre scores."""
    y, s = _binned_cases(seed, n)
    y[:4] = [0, 0, 1, 1]
    expected = delong_auc(y, s, level=0.9)
    got = auc_from_histograms(*score_histograms(y, s), level=0.9)
    assert got.auc == pytest.approx(expected.auc, abs=1e-12)
    assert got.variance == pytest.approx(expected.variance, abs=1e-12)
    assert got.ci == pytest.approx(expected.ci, abs=1e-10)


def test_auc_heavy_ties() -> None:
    """All cases in three bins: still equal to delong_auc; one positive raises."""
    y = np.array([0] * 5 + [1] * 4 + [0, 1, 1])
    s = np.array([0.2025] * 5 + [0.7025] * 4 + [0.5025] * 3)
    assert auc_from_histograms(*score_histograms(y, s)).variance == pytest.approx(delong_auc(y, s).variance, abs=1e-12)
    with pytest.raises(ValueError):
        auc_from_histograms(*score_histograms([0, 0, 1], [0.1, 0.2, 0.3]))


def test_net_benefit_matches_per_case_formula() -> None:
    """Net benefit at every DCA threshold equals TP/n - FP/n * t/(1-t) computed case by case."""
    y, s = _binned_cases(3)
    nb = net_benefit_from_histograms(*score_histograms(y, s), DCA_THRESHOLDS)
    for t, value in zip(DCA_THRESHOLDS, nb):
        pred = s >= t
        ref = np.sum(pred & (y == 1)) / y.size - np.sum(pred & (y == 0)) / y.size * t / (1 - t)
        assert value == pytest.approx(float(ref), abs=1e-12)
    assert all(type(v) is float for v in nb)


def test_dca_thresholds_and_treat_all() -> None:
    """0.01 .. 0.99 as multiples of 1/200; treat-all equals the lowest-edge net benefit."""
    assert len(DCA_THRESHOLDS) == 99 and DCA_THRESHOLDS[0] == 0.01 and DCA_THRESHOLDS[-1] == 0.99
    assert set(DCA_THRESHOLDS) <= set(bin_edges(HIST_BINS).tolist())
    y, s = _binned_cases(4)
    pos, neg = score_histograms(y, s)
    expected = [float(y.mean() - (1 - y.mean()) * t / (1 - t)) for t in (0.0, 0.1, 0.5)]
    assert treat_all_net_benefit(int(y.sum()), y.size, [0.0, 0.1, 0.5]) == pytest.approx(expected, abs=1e-12)
    assert net_benefit_from_histograms(pos, neg, [0.0]) == pytest.approx(expected[:1], abs=1e-12)
    assert treat_all_net_benefit(1, 4, [0.5]) == pytest.approx([0.25 - 0.75])
    for bad in [(5, 4, [0.1]), (1, 4, [1.0]), (0, 0, [0.1])]:
        with pytest.raises(ValueError):
            treat_all_net_benefit(*bad)


@pytest.mark.parametrize("threshold", [0.0123, 1.0, -0.005, 0.30001])
def test_non_edge_threshold_raises(threshold: float) -> None:
    """Thresholds off the bin edges (or the top edge) are rejected."""
    y, s = _binned_cases(5)
    pos, neg = score_histograms(y, s)
    with pytest.raises(ValueError):
        net_benefit_from_histograms(pos, neg, [0.1, threshold])
    with pytest.raises(ValueError):
        confusion_from_histograms(pos, neg, threshold)


def test_confusion_from_histograms() -> None:
    """Counts equal the per-case confusion matrix at edges, including a single-class site."""
    y, s = _binned_cases(6)
    pos, neg = score_histograms(y, s)
    for t in (0.0, 0.3, 0.5, 0.995):
        pred = s >= t
        expected = (
            int(np.sum(pred & (y == 1))),
            int(np.sum(pred & (y == 0))),
            int(np.sum(~pred & (y == 0))),
            int(np.sum(~pred & (y == 1))),
        )
        assert confusion_from_histograms(pos, neg, t) == expected
    assert confusion_from_histograms([0] * 200, [1] * 200, 0.5) == (0, 100, 100, 0)
