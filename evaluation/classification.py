"""Threshold-based and ranking metrics for binary classifiers, omitting undefined values."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from evaluation.binary import binary_arrays
from evaluation.delong import auc_score, delong_auc


def confusion_metrics(tp: int, fp: int, tn: int, fn: int) -> dict[str, float]:
    """Threshold-dependent proportions from confusion counts; undefined ones are omitted.

    Returns keys ``accuracy``, ``sensitivity``, ``specificity``, ``ppv``, ``npv``,
    ``f1`` (``2tp / (2tp + fp + fn)``) and ``kappa`` (Cohen's), each only when its
    denominator is non-zero.

    Raises:
        ValueError: If any count is negative.
    """
    if min(tp, fp, tn, fn) < 0:
        raise ValueError(f"confusion counts must be non-negative, got {(tp, fp, tn, fn)}")
    n = tp + fp + tn + fn
    out: dict[str, float] = {}
    ratios = {
        "accuracy": (tp + tn, n),
        "sensitivity": (tp, tp + fn),
        "specificity": (tn, tn + fp),
        "ppv": (tp, tp + fp),
        "npv": (tn, tn + fn),
        "f1": (2 * tp, 2 * tp + fp + fn),
    }
    for key, (num, den) in ratios.items():
        if den > 0:
            out[key] = float(num / den)
    if n > 0:
        expected = ((tp + fp) * (tp + fn) + (tn + fn) * (tn + fp)) / (n * n)
        if expected < 1.0:
            out["kappa"] = float(((tp + tn) / n - expected) / (1.0 - expected))
    return out


def _average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """Average precision (step-wise PR AUC, as scikit-learn); requires a positive case."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_run = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    tp = np.cumsum(y_sorted)[last_of_run]
    predicted = (np.arange(s.size) + 1)[last_of_run]
    precision = tp / predicted
    recall_gain = np.diff(np.r_[0, tp]) / tp[-1]
    return float(np.sum(recall_gain * precision))


def binary_metrics(labels: ArrayLike, scores: ArrayLike, threshold: float) -> dict[str, float | int | list[float]]:
    """Full metric set for binary labels and scores at a threshold (positive if score >= threshold).

    Undefined quantities are omitted: ``auc`` needs both classes, ``auc_ci`` (DeLong,
    95%) at least two cases per class, ``pr_auc`` a positive case, ``brier`` scores
    within [0, 1]; proportions follow :func:`confusion_metrics`.

    Args:
        labels: Binary 0/1 labels.
        scores: Finite scores (probabilities for ``brier``).
        threshold: Decision threshold.

    Returns:
        JSON-serialisable dict of plain Python ints, floats and lists.
    """
    y, s = binary_arrays(labels, scores)
    predicted = s >= threshold
    positive = y == 1
    tp = int(np.sum(predicted & positive))
    fp = int(np.sum(predicted & ~positive))
    tn = int(np.sum(~predicted & ~positive))
    fn = int(np.sum(~predicted & positive))
    n_pos = tp + fn
    n_neg = tn + fp
    out: dict[str, float | int | list[float]] = {
        "n": int(y.size),
        "n_positive": n_pos,
        "threshold": float(threshold),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }
    out.update(confusion_metrics(tp, fp, tn, fn))
    if n_pos >= 2 and n_neg >= 2:
        result = delong_auc(y, s)
        out["auc"] = result.auc
        out["auc_ci"] = [float(result.ci[0]), float(result.ci[1])]
    elif n_pos >= 1 and n_neg >= 1:
        out["auc"] = auc_score(y, s)
    if n_pos >= 1:
        out["pr_auc"] = _average_precision(y, s)
    if np.all((s >= 0.0) & (s <= 1.0)):
        out["brier"] = float(np.mean((s - y) ** 2))
    return out
