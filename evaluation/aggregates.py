"""ROC, DeLong AUC, decision curves and confusion counts from per-class score histograms.

Histograms are the ``bins`` equal-width counts of :func:`evaluation.thresholds.score_histograms`
(``HIST_BINS = 200``). Thresholds are bin lower edges ``k / bins`` with a case positive when
``score >= edge``; since no bin straddles an edge, counts at edges are exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import norm

from evaluation.delong import AucResult

DCA_THRESHOLDS: tuple[float, ...] = tuple(k / 200 for k in range(2, 200, 2))


def validate_histograms(
    pos: Sequence[int], neg: Sequence[int], require_both: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Check a ``(positive, negative)`` histogram pair and return it as int64 arrays.

    Args:
        pos: Positive-case counts per bin.
        neg: Negative-case counts per bin (same length).
        require_both: Demand at least one case of each class; otherwise at least one case.

    Raises:
        ValueError: On non 1-D, unequal-length or empty histograms, counts that are not
            non-negative integers, or too few cases.
    """
    p, q = np.asarray(pos), np.asarray(neg)
    if p.ndim != 1 or q.ndim != 1 or p.size != q.size or p.size == 0:
        raise ValueError(f"histograms must be non-empty 1-D of equal length, got {p.shape} and {q.shape}")
    for h in (p, q):
        hf = h.astype(np.float64)
        if not np.all(np.isfinite(hf)) or np.any(hf < 0) or np.any(hf != np.round(hf)):
            raise ValueError("histogram counts must be non-negative integers")
    p, q = p.astype(np.int64), q.astype(np.int64)
    if require_both and (p.sum() == 0 or q.sum() == 0):
        raise ValueError(f"both classes must be present, got {p.sum()} positive and {q.sum()} negative")
    if p.sum() + q.sum() == 0:
        raise ValueError("histograms hold no cases")
    return p, q


def _edge_indices(thresholds: Sequence[float], bins: int) -> np.ndarray:
    """Bin index ``k`` of each threshold ``k / bins`` (``0 <= k < bins``); ValueError otherwise."""
    t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    k = np.round(t * bins)
    bad = ~np.isfinite(t) | (np.abs(t * bins - k) > 1e-9) | (k < 0) | (k > bins - 1)
    if np.any(bad):
        raise ValueError(f"thresholds must be bin lower edges k/{bins}, 0 <= k < {bins}; got {t[bad][:5].tolist()}")
    return k.astype(np.int64)


def _at_or_above(counts: np.ndarray) -> np.ndarray:
    """Cases with score >= each edge ``k / bins`` for ``k = 0 .. bins`` (last entry 0)."""
    return np.r_[np.cumsum(counts[::-1])[::-1], 0]


def roc_from_histograms(pos: Sequence[int], neg: Sequence[int]) -> dict[str, list[float]]:
    """ROC points at every bin edge, from (1, 1) at edge 0 down to (0, 0) past the last bin."""
    p, q = validate_histograms(pos, neg)
    tpr = _at_or_above(p) / p.sum()
    fpr = _at_or_above(q) / q.sum()
    return {"fpr": [float(v) for v in fpr], "tpr": [float(v) for v in tpr]}


def auc_from_histograms(pos: Sequence[int], neg: Sequence[int], level: float = 0.95) -> AucResult:
    """DeLong AUC, variance and CI treating each case's score as its bin centre (equals ``delong_auc``).

    Raises:
        ValueError: On invalid histograms, fewer than two cases in a class, or invalid ``level``.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    p, q = validate_histograms(pos, neg)
    m, n = int(p.sum()), int(q.sum())
    if m < 2 or n < 2:
        raise ValueError(f"need at least 2 positive and 2 negative cases, got {m} positive and {n} negative")
    # Structural components per bin: V10 for a positive, V01 for a negative (ties count 1/2).
    neg_below = np.cumsum(q) - q
    pos_above = _at_or_above(p)[1:]
    v10 = (neg_below + 0.5 * q) / n
    v01 = (pos_above + 0.5 * p) / m
    auc = float(np.sum(p * v10) / m)
    mean01 = float(np.sum(q * v01) / n)
    variance = float(np.sum(p * (v10 - auc) ** 2) / (m - 1) / m + np.sum(q * (v01 - mean01) ** 2) / (n - 1) / n)
    half = float(norm.ppf(0.5 + level / 2.0)) * float(np.sqrt(variance))
    return AucResult(auc=auc, variance=variance, ci=(max(0.0, auc - half), min(1.0, auc + half)))


def confusion_from_histograms(pos: Sequence[int], neg: Sequence[int], threshold: float) -> tuple[int, int, int, int]:
    """``(tp, fp, tn, fn)`` at a bin-edge threshold (positive when ``score >= threshold``)."""
    p, q = validate_histograms(pos, neg, require_both=False)
    k = int(_edge_indices([threshold], p.size)[0])
    tp, fp = int(p[k:].sum()), int(q[k:].sum())
    return tp, fp, int(q.sum()) - fp, int(p.sum()) - tp


def net_benefit_from_histograms(pos: Sequence[int], neg: Sequence[int], thresholds: Sequence[float]) -> list[float]:
    """Net benefit ``TP/n - FP/n * t/(1-t)`` at each bin-edge threshold ``t``.

    Raises:
        ValueError: On invalid histograms or a threshold that is not a bin lower edge.
    """
    p, q = validate_histograms(pos, neg, require_both=False)
    k = _edge_indices(thresholds, p.size)
    n = float(p.sum() + q.sum())
    t = k / p.size
    return [float(v) for v in _at_or_above(p)[k] / n - _at_or_above(q)[k] / n * t / (1.0 - t)]


def treat_all_net_benefit(n_pos: int, n: int, thresholds: Sequence[float]) -> list[float]:
    """Net benefit of treating everyone, ``prevalence - (1 - prevalence) * t/(1-t)``.

    Raises:
        ValueError: Unless ``0 <= n_pos <= n``, ``n > 0`` and every threshold lies in [0, 1).
    """
    if n <= 0 or not 0 <= n_pos <= n:
        raise ValueError(f"need 0 <= n_pos <= n and n > 0, got n_pos={n_pos}, n={n}")
    t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if np.any(~np.isfinite(t) | (t < 0.0) | (t >= 1.0)):
        raise ValueError("thresholds must lie in [0, 1)")
    prevalence = n_pos / n
    return [float(v) for v in prevalence - (1.0 - prevalence) * t / (1.0 - t)]
