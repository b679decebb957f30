"""Empirical ROC on a fixed FPR grid with a pointwise stratified-bootstrap percentile band."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from evaluation.binary import binary_arrays

GRID_STEPS: int = 50
ROC_GRID: tuple[float, ...] = tuple(k / GRID_STEPS for k in range(GRID_STEPS + 1))


def _tpr_on_grid(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Step-curve TPR (max TPR with FPR <= grid value) for each row of ``pos``/``neg`` samples.

    Args:
        pos: Positive scores, shape ``(rows, m)``.
        neg: Negative scores, shape ``(rows, n)``.

    Returns:
        Array ``(rows, len(ROC_GRID))``.
    """
    n = neg.shape[1]
    allowed_fp = np.arange(GRID_STEPS + 1) * n // GRID_STEPS
    inner = allowed_fp < n
    # With at most k false positives the threshold must exceed the (k+1)-th largest negative.
    cut = -np.sort(-neg, axis=1)[:, allowed_fp[inner]]
    tpr = np.ones((pos.shape[0], allowed_fp.size))
    tpr[:, inner] = np.mean(pos[:, None, :] > cut[:, :, None], axis=2)
    return tpr


def roc_band(
    labels: ArrayLike, scores: ArrayLike, n_boot: int = 200, level: float = 0.95, seed: int = 0
) -> dict[str, list[float]]:
    """ROC TPR on ``ROC_GRID`` with a pointwise percentile band from class-stratified bootstrap resamples.

    The band is widened where needed so that it always contains the point estimate.
    Returns ``{}`` when a class has fewer than two cases.

    Args:
        labels: Binary 0/1 labels.
        scores: Finite scores, higher meaning more likely positive.
        n_boot: Number of bootstrap resamples (at least 1).
        level: Coverage of the pointwise band, in (0, 1).
        seed: Seed of ``numpy.random.default_rng``.

    Returns:
        ``{"tpr", "tpr_lo", "tpr_hi"}`` as lists of ``len(ROC_GRID)`` floats.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    y, s = binary_arrays(labels, scores)
    pos, neg = s[y == 1], s[y == 0]
    if pos.size < 2 or neg.size < 2:
        return {}
    rng = np.random.default_rng(seed)
    boot_pos = pos[rng.integers(0, pos.size, (n_boot, pos.size))]
    boot_neg = neg[rng.integers(0, neg.size, (n_boot, neg.size))]
    tpr = _tpr_on_grid(pos[None, :], neg[None, :])[0]
    boot = _tpr_on_grid(boot_pos, boot_neg)
    alpha = 1.0 - level
    lo = np.minimum(np.quantile(boot, alpha / 2.0, axis=0), tpr)
    hi = np.maximum(np.quantile(boot, 1.0 - alpha / 2.0, axis=0), tpr)
    return {"tpr": [float(v) for v in tpr], "tpr_lo": [float(v) for v in lo], "tpr_hi": [float(v) for v in hi]}
