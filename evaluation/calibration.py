"""Calibration: logistic recalibration slope/intercept, Hosmer-Lemeshow test, pooled reliability curve."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import statsmodels.api as sm
from numpy.typing import ArrayLike
from scipy.stats import chi2
from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationError, PerfectSeparationWarning

from evaluation.aggregates import validate_histograms
from evaluation.binary import binary_arrays

EPS: float = 1e-6
_FIT_FAILURES = (PerfectSeparationError, PerfectSeparationWarning, ConvergenceWarning, np.linalg.LinAlgError)


def _probabilities(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validated labels and scores clipped to ``[EPS, 1 - EPS]``; ValueError if a score is outside [0, 1]."""
    y, s = binary_arrays(labels, scores)
    if np.any((s < 0.0) | (s > 1.0)):
        raise ValueError("scores must be probabilities in [0, 1]")
    return y.astype(np.float64), np.clip(s, EPS, 1.0 - EPS)


def _fit(model: sm.Logit | sm.GLM) -> np.ndarray | None:
    """Parameters of a fitted model, or None on separation, non-convergence or a singular design."""
    with warnings.catch_warnings():
        for category in (PerfectSeparationWarning, ConvergenceWarning):
            warnings.simplefilter("error", category)
        try:
            params = np.asarray(model.fit(disp=0).params, dtype=np.float64)
        except _FIT_FAILURES:
            return None
    return params if np.all(np.isfinite(params)) else None


def calibration_regression(labels: ArrayLike, scores: ArrayLike) -> dict[str, float]:
    """Calibration slope (``y ~ 1 + logit(p)``) and intercept (``y ~ 1`` with offset ``logit(p)``).

    A key is omitted when its fit fails (one class, perfect separation, no spread in
    scores for the slope).
    """
    y, p = _probabilities(labels, scores)
    out: dict[str, float] = {}
    if y.min() == y.max():
        return out
    lp = np.log(p / (1.0 - p))
    if np.ptp(lp) > 0.0:
        params = _fit(sm.Logit(y, np.column_stack([np.ones_like(lp), lp])))
        if params is not None:
            out["calibration_slope"] = float(params[1])
    params = _fit(sm.GLM(y, np.ones((y.size, 1)), family=sm.families.Binomial(), offset=lp))
    if params is not None:
        out["calibration_intercept"] = float(params[0])
    return out


def hosmer_lemeshow(labels: ArrayLike, scores: ArrayLike, groups: int = 10) -> dict[str, float]:
    """Hosmer-Lemeshow C-hat over groups of sorted predicted risk: ``hl_stat``, ``hl_df``, ``hl_p``.

    Cases are stably sorted by score and split by ``numpy.array_split``; with fewer than
    ``2 * groups`` cases ``n // 2`` groups are used. Scores are clipped to
    ``[EPS, 1 - EPS]`` so expected counts are positive. Empty dict if n < 6 or one class.

    Raises:
        ValueError: On invalid inputs or ``groups < 3``.
    """
    if groups < 3:
        raise ValueError(f"groups must be at least 3, got {groups}")
    y, p = _probabilities(labels, scores)
    n = y.size
    if n < 6 or y.min() == y.max():
        return {}
    g = groups if n >= 2 * groups else n // 2
    order = np.argsort(p, kind="stable")
    stat = 0.0
    for idx in np.array_split(order, g):
        observed1, expected1 = float(y[idx].sum()), float(p[idx].sum())
        expected0 = idx.size - expected1
        stat += (observed1 - expected1) ** 2 / expected1 + (idx.size - observed1 - expected0) ** 2 / expected0
    return {"hl_stat": float(stat), "hl_df": g - 2, "hl_p": float(chi2.sf(stat, g - 2))}


def calibration_curve_from_histograms(
    pos: Sequence[int], neg: Sequence[int], groups: int = 10
) -> dict[str, list[float]]:
    """Reliability curve from per-class histograms, merging whole bins into ~``groups`` equal-count groups.

    A bin joins the group in which its cumulative-count midpoint falls. Each group
    reports its mean bin-centre score (``predicted``), event rate (``observed``) and
    case count (``n``); empty groups are skipped.
    """
    if groups < 1:
        raise ValueError(f"groups must be positive, got {groups}")
    p, q = validate_histograms(pos, neg, require_both=False)
    counts = p + q
    total = int(counts.sum())
    centres = (np.arange(p.size) + 0.5) / p.size
    midpoints = np.cumsum(counts) - 0.5 * counts
    group = np.minimum((groups * midpoints / total).astype(np.int64), groups - 1)
    n_g = np.bincount(group, weights=counts, minlength=groups)
    keep = n_g > 0
    predicted = np.bincount(group, weights=counts * centres, minlength=groups)[keep] / n_g[keep]
    observed = np.bincount(group, weights=p, minlength=groups)[keep] / n_g[keep]
    return {
        "predicted": [float(v) for v in predicted],
        "observed": [float(v) for v in observed],
        "n": [int(v) for v in n_g[keep]],
    }
