"""DeLong AUC variance and paired test via the fast midrank algorithm of Sun & Xu (2014)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm, rankdata

from evaluation.binary import binary_arrays


@dataclass(frozen=True)
class AucResult:
    """AUC with its DeLong variance and a normal-approximation confidence interval."""

    auc: float
    variance: float
    ci: tuple[float, float]


def _split_classes(labels: ArrayLike, scores: ArrayLike, min_per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate inputs and return (positive scores, negative scores) with enough cases per class."""
    y, s = binary_arrays(labels, scores)
    pos, neg = s[y == 1], s[y == 0]
    if pos.size < min_per_class or neg.size < min_per_class:
        raise ValueError(
            f"need at least {min_per_class} positive and {min_per_class} negative case(s), "
            f"got {pos.size} positive and {neg.size} negative"
        )
    return pos, neg


def _components(pos: np.ndarray, neg: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Return AUC and DeLong structural components (V10 per positive, V01 per negative).

    V10_i is the fraction of negatives scored below positive i and V01_j the fraction
    of positives scored above negative j; ties count 1/2. Computed from midranks in
    O(N log N) following Sun & Xu (2014).
    """
    m, n = pos.size, neg.size
    combined = rankdata(np.concatenate([pos, neg]), method="average")
    rank_pos_within = rankdata(pos, method="average")
    rank_neg_within = rankdata(neg, method="average")
    v10 = (combined[:m] - rank_pos_within) / n
    v01 = 1.0 - (combined[m:] - rank_neg_within) / m
    auc = float(v10.mean())
    return auc, v10, v01


def _variance(v10: np.ndarray, v01: np.ndarray) -> float:
    """DeLong variance var(V10)/m + var(V01)/n with unbiased (ddof=1) sample variances."""
    return float(np.var(v10, ddof=1) / v10.size + np.var(v01, ddof=1) / v01.size)


def auc_score(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney, ties 1/2); needs one case of each class."""
    pos, neg = _split_classes(labels, scores, min_per_class=1)
    return _components(pos, neg)[0]


def delong_auc(labels: ArrayLike, scores: ArrayLike, level: float = 0.95) -> AucResult:
    """AUC with DeLong variance and a normal-approximation CI clipped to [0, 1].

    Args:
        labels: Binary 0/1 labels; at least two cases of each class are required
            (the DeLong variance is undefined with a single case in a class).
        scores: Finite scores, higher meaning more likely positive.
        level: Confidence level of the interval, in (0, 1).

    Returns:
        The AUC, its variance and the ``level`` confidence interval.

    Raises:
        ValueError: On invalid inputs, too few cases per class, or invalid ``level``.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    pos, neg = _split_classes(labels, scores, min_per_class=2)
    auc, v10, v01 = _components(pos, neg)
    variance = _variance(v10, v01)
    half = float(norm.ppf(0.5 + level / 2.0)) * float(np.sqrt(variance))
    ci = (max(0.0, auc - half), min(1.0, auc + half))
    return AucResult(auc=auc, variance=variance, ci=ci)


def delong_test(labels: ArrayLike, scores_a: ArrayLike, scores_b: ArrayLike) -> tuple[float, float]:
    """DeLong test of equal AUC for two correlated ROC curves on the same cases.

    The statistic is ``z = (AUC_a - AUC_b) / sd`` where ``sd`` comes from the DeLong
    variance of the difference. If the difference has zero variance and zero AUC
    difference (e.g. identical or rank-equivalent score vectors) the curves are
    indistinguishable and ``(0.0, 1.0)`` is returned rather than raising.

    Args:
        labels: Binary 0/1 labels, at least two cases of each class.
        scores_a: Scores of the first predictor.
        scores_b: Scores of the second predictor, same cases and order.

    Returns:
        ``(z, p)`` with ``p`` the two-sided normal p-value.

    Raises:
        ValueError: On invalid inputs, or a zero-variance difference with unequal AUCs.
    """
    y, a = binary_arrays(labels, scores_a)
    _, b = binary_arrays(y, scores_b)
    pos_a, neg_a = _split_classes(y, a, min_per_class=2)
    auc_a, v10_a, v01_a = _components(pos_a, neg_a)
    auc_b, v10_b, v01_b = _components(b[y == 1], b[y == 0])
    diff = auc_a - auc_b
    var_diff = _variance(v10_a - v10_b, v01_a - v01_b)
    if var_diff <= 0.0:
        if abs(diff) <= 1e-12:
            return 0.0, 1.0
        raise ValueError("AUC difference has zero variance but the AUCs differ; test undefined")
    z = diff / float(np.sqrt(var_diff))
    p = float(2.0 * norm.sf(abs(z)))
    return float(z), min(1.0, p)
