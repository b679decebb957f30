"""Tests for Wilson confidence intervals of confusion-matrix proportions."""

from __future__ import annotations

import json
import math

import pytest
from statsmodels.stats.proportion import proportion_confint

from evaluation.proportions import proportion_cis, wilson_ci


def _wilson_by_hand(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval from its closed form."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_wilson_matches_closed_form() -> None:
    """8/10 gives (0.4902, 0.9433), as the closed-form Wilson interval."""
    low, high = wilson_ci(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    for k, n in [(0, 7), (3, 7), (7, 7), (45, 120)]:
        assert wilson_ci(k, n) == pytest.approx(list(_wilson_by_hand(k, n)), abs=1e-4)


@pytest.mark.parametrize(("k", "n", "level"), [(8, 10, 0.95), (1, 50, 0.9), (0, 3, 0.99), (99, 100, 0.95)])
def test_wilson_matches_statsmodels(k: int, n: int, level: float) -> None:
    """Equal to statsmodels' Wilson interval at several levels and returned as plain floats."""
    ci = wilson_ci(k, n, level)
    assert ci == pytest.approx(list(proportion_confint(k, n, alpha=1 - level, method="wilson")), abs=1e-12)
    assert all(type(v) is float for v in ci) and 0.0 <= ci[0] < ci[1] <= 1.0


def test_wilson_empty_and_invalid() -> None:
    """Zero total gives None; impossible counts or levels raise."""
    assert wilson_ci(0, 0) is None
    for args in [(3, 2, 0.95), (-1, 5, 0.95), (1, 5, 1.0)]:
        with pytest.raises(ValueError):
            wilson_ci(*args)


def test_proportion_cis_keys_and_values() -> None:
    """Each interval uses its own numerator/denominator and the dict is JSON-serialisable."""
    out = proportion_cis(tp=8, fp=3, tn=20, fn=2)
    assert set(out) == {"accuracy_ci", "sensitivity_ci", "specificity_ci", "ppv_ci", "npv_ci"}
    assert out["sensitivity_ci"] == wilson_ci(8, 10)
    assert out["specificity_ci"] == wilson_ci(20, 23)
    assert out["ppv_ci"] == wilson_ci(8, 11)
    assert out["npv_ci"] == wilson_ci(20, 22)
    assert out["accuracy_ci"] == wilson_ci(28, 33)
    json.dumps(out)


def test_proportion_cis_omit_zero_denominators() -> None:
    """No positives: sensitivity omitted; nothing predicted positive: PPV omitted."""
    out = proportion_cis(tp=0, fp=0, tn=5, fn=0)
    assert set(out) == {"accuracy_ci", "specificity_ci", "npv_ci"}
    assert proportion_cis(0, 0, 0, 0) == {}
    with pytest.raises(ValueError):
        proportion_cis(1, -1, 0, 0)
