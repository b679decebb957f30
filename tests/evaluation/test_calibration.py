"""Tests for calibration slope/intercept, Hosmer-Lemeshow and the pooled reliability curve."""

from __future__ import annotations

import json

import numpy as np
import pytest
import statsmodels.api as sm
from scipy.stats import chi2

from evaluation.calibration import calibration_curve_from_histograms, calibration_regression, hosmer_lemeshow
from evaluation.thresholds import score_histograms


def _simulate(seed: int, n: int = 5000) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from a logistic model and the true linear predictor."""
    rng = np.random.default_rng(seed)
    lp = -0.8 + 1.3 * rng.normal(size=n)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-lp))).astype(int)
    return y, lp


def _expit(x: np.ndarray) -> np.ndarray:
    """Logistic function."""
    return 1.0 / (1.0 + np.exp(-x))


def _hl_loop(y: np.ndarray, p: np.ndarray, g: int) -> float:
    """Hosmer-Lemeshow statistic written out case by case."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    sizes = [len(p) // g + (1 if k < len(p) % g else 0) for k in range(g)]
    stat, start = 0.0, 0
    for size in sizes:
        idx = order[start : start + size]
        start += size
        o1 = sum(y[i] for i in idx)
        e1 = sum(p[i] for i in idx)
        stat += (o1 - e1) ** 2 / e1 + ((size - o1) - (size - e1)) ** 2 / (size - e1)
    return stat


def test_calibrated_scores_have_unit_slope_and_zero_intercept() -> None:
    """Scores equal to the true risk: slope ~1, intercept ~0."""
    y, lp = _simulate(0)
    out = calibration_regression(y, _expit(lp))
    assert out["calibration_slope"] == pytest.approx(1.0, abs=0.1)
    assert out["calibration_intercept"] == pytest.approx(0.0, abs=0.1)


def test_overconfident_scores_have_half_slope() -> None:
    """Logit doubled: slope ~0.5, matching an independent statsmodels fit."""
    y, lp = _simulate(1)
    p = _expit(2.0 * lp)
    out = calibration_regression(y, p)
    assert out["calibration_slope"] == pytest.approx(0.5, abs=0.1)
    ref = sm.Logit(y, sm.add_constant(np.log(p / (1 - p)))).fit(disp=0).params
    assert out["calibration_slope"] == pytest.approx(float(ref[1]), abs=1e-6)


def test_intercept_detects_systematic_overestimation() -> None:
    """Risks shifted up by 1 on the logit scale give intercept ~ -1 and a GLM-offset match."""
    y, lp = _simulate(2)
    p = _expit(lp + 1.0)
    out = calibration_regression(y, p)
    assert out["calibration_intercept"] == pytest.approx(-1.0, abs=0.1)
    glm = sm.GLM(y, np.ones((y.size, 1)), family=sm.families.Binomial(), offset=np.log(p / (1 - p))).fit()
    assert out["calibration_intercept"] == pytest.approx(float(glm.params[0]), abs=1e-6)


def test_regression_omits_failed_fits() -> None:
    """Separated data loses the slope, one class loses everything; out-of-range scores raise."""
    separated = calibration_regression([0, 0, 0, 1, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert "calibration_slope" not in separated
    assert calibration_regression([0, 0, 0], [0.1, 0.5, 0.9]) == {}
    assert set(calibration_regression([0, 1, 0, 1], [0.5] * 4)) == {"calibration_intercept"}
    with pytest.raises(ValueError):
        calibration_regression([0, 1], [0.2, 1.2])


def test_hosmer_lemeshow_calibrated_and_miscalibrated() -> None:
    """Calibrated data is not rejected; overconfident scores are strongly rejected."""
    # Fixed seed; note that with predictions not fitted on these data C-hat is nearer
    # chi2(g) than chi2(g - 2), so df = g - 2 rejects calibrated data ~9% of the time.
    y, lp = _simulate(0, n=2000)
    good = hosmer_lemeshow(y, _expit(lp))
    assert good["hl_df"] == 8 and good["hl_p"] > 0.05
    bad = hosmer_lemeshow(y, _expit(2.5 * lp + 0.5))
    assert bad["hl_p"] < 0.001
    json.dumps(good)


def test_hosmer_lemeshow_matches_loop() -> None:
    """Statistic and p-value equal a plain loop over the sorted groups, including uneven sizes."""
    y, lp = _simulate(4, n=537)
    p = _expit(0.7 * lp)
    out = hosmer_lemeshow(y, p)
    stat = _hl_loop(y, p, 10)
    assert out["hl_stat"] == pytest.approx(stat, rel=1e-10)
    assert out["hl_p"] == pytest.approx(float(chi2.sf(stat, 8)), rel=1e-10)


def test_hosmer_lemeshow_small_samples() -> None:
    """With n < 2 * groups, n // 2 groups; n < 6 or one class gives nothing."""
    y = np.array([0, 1, 0, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1])
    p = np.linspace(0.1, 0.9, y.size)
    out = hosmer_lemeshow(y, p)
    assert out["hl_df"] == 6 - 2
    assert out["hl_stat"] == pytest.approx(_hl_loop(y, p, 6), rel=1e-10)
    assert hosmer_lemeshow(y[:5], p[:5]) == {}
    assert hosmer_lemeshow(np.zeros(30, dtype=int), np.linspace(0.1, 0.9, 30)) == {}
    with pytest.raises(ValueError):
        hosmer_lemeshow(y, p, groups=2)


def test_curve_from_histograms() -> None:
    """Groups hold whole bins, counts sum to n, event rates and mean scores match the per-case data."""
    y, lp = _simulate(5, n=3000)
    p = _expit(lp)
    pos, neg = score_histograms(y, p)
    curve = calibration_curve_from_histograms(pos, neg)
    assert sum(curve["n"]) == y.size
    assert 8 <= len(curve["n"]) <= 10 and max(curve["n"]) < 2 * y.size / 10
    assert np.all(np.diff(curve["predicted"]) > 0)
    assert np.allclose(curve["observed"], curve["predicted"], atol=0.08)
    total_events = sum(o * n for o, n in zip(curve["observed"], curve["n"]))
    assert total_events == pytest.approx(int(y.sum()))
    json.dumps(curve)


def test_curve_never_splits_a_bin_and_skips_empty_groups() -> None:
    """One occupied bin gives one group at that bin's centre."""
    pos, neg = [0] * 200, [0] * 200
    pos[120], neg[120] = 3, 7
    curve = calibration_curve_from_histograms(pos, neg)
    assert curve == {"predicted": [pytest.approx(120.5 / 200)], "observed": [pytest.approx(0.3)], "n": [10]}


def test_curve_groups_have_equal_counts_when_bins_allow() -> None:
    """Ten equally filled bins merge into five groups of exactly two bins each."""
    pos, neg = [0] * 200, [0] * 200
    for k in range(10):
        pos[20 * k], neg[20 * k] = k, 10 - k
    curve = calibration_curve_from_histograms(pos, neg, groups=5)
    assert curve["n"] == [20, 20, 20, 20, 20]
    assert curve["observed"] == pytest.approx([0.05, 0.25, 0.45, 0.65, 0.85])
    assert curve["predicted"] == pytest.approx([0.0525, 0.2525, 0.4525, 0.6525, 0.8525])
