"""Net reclassification improvement and integrated discrimination improvement of a new model over an old one.

Both follow Pencina MJ, D'Agostino RB Sr, D'Agostino RB Jr, Vasan RS. "Evaluating the added
predictive ability of a new marker: from area under the ROC curve to reclassification and
beyond." Stat Med 2008;27:157-172 (NRI: section 3.2; IDI: section 3.3).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm

from evaluation.binary import binary_arrays


def _paired(labels: ArrayLike, old: ArrayLike, new: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated labels and the two models' scores for the same cases."""
    y, a = binary_arrays(labels, old)
    _, b = binary_arrays(y, new)
    return y, a, b


def _two_sided_p(estimate: float, variance: float) -> float | None:
    """Two-sided normal p-value of ``estimate / sqrt(variance)``; None when the variance is 0."""
    if not variance > 0.0:
        return None
    return min(1.0, float(2.0 * norm.sf(abs(estimate) / np.sqrt(variance))))


def _categories(scores: np.ndarray, cutoffs: np.ndarray) -> np.ndarray:
    """Risk category = number of cutoffs at or below the score (a cutoff starts its category)."""
    return np.searchsorted(cutoffs, scores, side="right")


def nri(labels: ArrayLike, old: ArrayLike, new: ArrayLike, cutoffs: Sequence[float] | None = None) -> dict[str, float]:
    """Categorical NRI over risk categories cut at ``cutoffs``, or continuous NRI when ``cutoffs`` is None.

    Returns ``nri``, ``nri_events``, ``nri_nonevents`` and ``nri_p`` (two-sided z-test);
    ``{}`` when a class is empty, and no ``nri_p`` when nobody is reclassified.

    Raises:
        ValueError: On invalid inputs or cutoffs that are not finite and strictly increasing.
    """
    y, a, b = _paired(labels, old, new)
    if cutoffs is None:
        up, down = b > a, b < a
    else:
        c = np.asarray(cutoffs, dtype=np.float64).reshape(-1)
        if c.size == 0 or not np.all(np.isfinite(c)) or np.any(np.diff(c) <= 0.0):
            raise ValueError(f"cutoffs must be finite and strictly increasing, got {list(cutoffs)}")
        cat_old, cat_new = _categories(a, c), _categories(b, c)
        up, down = cat_new > cat_old, cat_new < cat_old
    events, nonevents = y == 1, y == 0
    n_e, n_ne = int(events.sum()), int(nonevents.sum())
    if n_e == 0 or n_ne == 0:
        return {}
    up_e, down_e = float(up[events].mean()), float(down[events].mean())
    up_ne, down_ne = float(up[nonevents].mean()), float(down[nonevents].mean())
    out = {"nri_events": up_e - down_e, "nri_nonevents": down_ne - up_ne}
    out["nri"] = out["nri_events"] + out["nri_nonevents"]
    # Pencina et al. 2008 (Stat Med 27:157), section 3.2: McNemar-type variance
    # (p_up,events + p_down,events) / #events + (p_up,nonevents + p_down,nonevents) / #nonevents.
    p = _two_sided_p(out["nri"], (up_e + down_e) / n_e + (up_ne + down_ne) / n_ne)
    if p is not None:
        out["nri_p"] = p
    return out


def idi(labels: ArrayLike, old: ArrayLike, new: ArrayLike) -> dict[str, float]:
    """Integrated discrimination improvement ``idi`` with its z-test p-value ``idi_p``.

    ``{}`` when a class is empty; no ``idi_p`` with fewer than two cases in a class or a
    zero standard error.
    """
    y, a, b = _paired(labels, old, new)
    d = b - a
    d_e, d_ne = d[y == 1], d[y == 0]
    if d_e.size == 0 or d_ne.size == 0:
        return {}
    out = {"idi": float(d_e.mean() - d_ne.mean())}
    if d_e.size >= 2 and d_ne.size >= 2:
        # Pencina et al. 2008 (Stat Med 27:157), section 3.3: z = IDI / sqrt(se_events^2 + se_nonevents^2),
        # each se the standard error of the paired new - old differences within the class.
        variance = float(np.var(d_e, ddof=1) / d_e.size + np.var(d_ne, ddof=1) / d_ne.size)
        p = _two_sided_p(out["idi"], variance)
        if p is not None:
            out["idi_p"] = p
    return out
