"""Tests for the grid ROC curve and its bootstrap band."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from evaluation.roc_band import ROC_GRID, roc_band


def _data(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Binary labels and tied, overlapping scores."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return y, np.round(rng.normal(y * 1.0, 1.0), 1)


def test_grid() -> None:
    """51 points 0.00 .. 1.00 in steps of 0.02."""
    assert len(ROC_GRID) == 51 and ROC_GRID[0] == 0.0 and ROC_GRID[-1] == 1.0
    assert np.allclose(np.diff(ROC_GRID), 0.02)


@pytest.mark.parametrize(("seed", "n"), [(0, 200), (1, 37), (2, 500)])
def test_point_estimate_is_sklearn_step_curve(seed: int, n: int) -> None:
    """TPR at each grid FPR is the largest sklearn ROC TPR with FPR at or below it."""
    y, s = _data(seed, n)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    expected = [float(tpr[fpr <= g + 1e-12].max()) for g in ROC_GRID]
    assert roc_band(y, s, n_boot=20)["tpr"] == pytest.approx(expected, abs=1e-12)


def test_band_contains_estimate_and_is_monotone() -> None:
    """lo <= tpr <= hi everywhere, all three non-decreasing in FPR and within [0, 1]."""
    y, s = _data(3, 200)
    band = roc_band(y, s)
    tpr, lo, hi = (np.array(band[k]) for k in ("tpr", "tpr_lo", "tpr_hi"))
    assert tpr.size == lo.size == hi.size == len(ROC_GRID)
    assert np.all(lo <= tpr) and np.all(tpr <= hi)
    assert np.all(lo >= 0.0) and np.all(hi <= 1.0) and hi[-1] == 1.0
    for curve in (tpr, lo, hi):
        assert np.all(np.diff(curve) >= 0.0)
    assert np.mean(hi - lo) > 0.05
    json.dumps(band)


def test_band_narrows_with_more_data() -> None:
    """Mean band width at 2000 cases is well below that at 100 cases."""
    small = roc_band(*_data(4, 100))
    large = roc_band(*_data(4, 2000))
    width = lambda b: float(np.mean(np.array(b["tpr_hi"]) - np.array(b["tpr_lo"])))  # noqa: E731
    assert width(large) < 0.5 * width(small)


def test_seed_reproducible_and_level() -> None:
    """Same seed gives the same band; a lower level gives a band no wider."""
    y, s = _data(5, 150)
    assert roc_band(y, s, seed=7) == roc_band(y, s, seed=7)
    assert roc_band(y, s, seed=7) != roc_band(y, s, seed=8)
    wide, narrow = roc_band(y, s, level=0.95), roc_band(y, s, level=0.5)
    assert np.all(np.array(narrow["tpr_lo"]) >= np.array(wide["tpr_lo"]))
    assert np.all(np.array(narrow["tpr_hi"]) <= np.array(wide["tpr_hi"]))


def test_too_few_cases_and_invalid_arguments() -> None:
    """Fewer than two cases in a class gives {}; bad level or n_boot raises."""
    assert roc_band([0, 0, 0, 1], [0.1, 0.2, 0.3, 0.9]) == {}
    with pytest.raises(ValueError):
        roc_band([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.9], level=1.0)
    with pytest.raises(ValueError):
        roc_band([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.9], n_boot=0)
