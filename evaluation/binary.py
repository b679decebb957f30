"""Checked binary labels and scores: the input every per-case statistic starts from (numpy only)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def binary_arrays(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert labels (binary 0/1) and scores (finite) to 1-D arrays.

    Args:
        labels: Case labels, each 0 or 1 (bool, int or float).
        scores: Case scores, higher meaning more likely positive.

    Returns:
        ``(labels, scores)`` as ``int8`` and ``float64`` arrays.

    Raises:
        ValueError: If inputs are empty, not 1-D, differ in length, labels are not
            0/1, or scores are not finite.
    """
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D, got shapes {y.shape} and {s.shape}")
    if y.shape[0] != s.shape[0]:
        raise ValueError(f"labels and scores differ in length: {y.shape[0]} != {s.shape[0]}")
    if y.shape[0] == 0:
        raise ValueError("labels and scores are empty")
    try:
        yf = y.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError("labels must be binary 0/1") from exc
    if not np.all((yf == 0.0) | (yf == 1.0)):
        bad = np.unique(y[~((yf == 0.0) | (yf == 1.0))])[:5]
        raise ValueError(f"labels must be binary 0/1, found e.g. {bad.tolist()}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite (no NaN or inf)")
    return yf.astype(np.int8), s
