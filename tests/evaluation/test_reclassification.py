"""Tests for NRI and IDI (Pencina et al. 2008)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import norm

from evaluation.reclassification import idi, nri

# Ten cases, cutoffs 0.2 and 0.5 (categories <0.2, [0.2, 0.5), >=0.5):
#   events     old  0.10 0.40 0.50 0.30 0.25  cat 0 1 2 1 1
#              new  0.30 0.60 0.70 0.15 0.45  cat 1 2 2 0 1   -> up 2, down 1
#   nonevents  old  0.30 0.60 0.15 0.10 0.45  cat 1 2 0 0 1
#              new  0.10 0.40 0.25 0.05 0.35  cat 0 1 1 0 1   -> down 2, up 1
Y = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
OLD = np.array([0.10, 0.40, 0.50, 0.30, 0.25, 0.30, 0.60, 0.15, 0.10, 0.45])
NEW = np.array([0.30, 0.60, 0.70, 0.15, 0.45, 0.10, 0.40, 0.25, 0.05, 0.35])


def test_categorical_nri_by_hand() -> None:
    """NRI = (2-1)/5 + (2-1)/5 = 0.4; var = 0.6/5 + 0.6/5 = 0.24."""
    out = nri(Y, OLD, NEW, cutoffs=[0.2, 0.5])
    assert out["nri_events"] == pytest.approx(0.2)
    assert out["nri_nonevents"] == pytest.approx(0.2)
    assert out["nri"] == pytest.approx(0.4)
    assert out["nri_p"] == pytest.approx(2 * norm.sf(0.4 / np.sqrt(0.24)))
    json.dumps(out)


def test_continuous_nri_by_hand() -> None:
    """Events: up 4 (all but case 4), down 1; nonevents: down 4, up 1 -> NRI 0.6 + 0.6; var = 1/5 + 1/5."""
    out = nri(Y, OLD, NEW)
    assert out["nri_events"] == pytest.approx(0.6)
    assert out["nri_nonevents"] == pytest.approx(0.6)
    assert out["nri"] == pytest.approx(1.2)
    assert out["nri_p"] == pytest.approx(2 * norm.sf(1.2 / np.sqrt(0.4)))


def test_idi_by_hand() -> None:
    """IDI = 0.13 - (-0.09) = 0.22 with SE from the paired differences' sample variances."""
    # new - old: events 0.2 0.2 0.2 -0.15 0.2 (mean 0.13, ddof-1 variance 0.098 / 4 = 0.0245);
    # nonevents -0.2 -0.2 0.1 -0.05 -0.1 (mean -0.09, variance 0.062 / 4 = 0.0155).
    out = idi(Y, OLD, NEW)
    assert out["idi"] == pytest.approx(0.22)
    se = np.sqrt(0.0245 / 5 + 0.0155 / 5)
    assert out["idi_p"] == pytest.approx(2 * norm.sf(0.22 / se))


def test_identical_models_and_swapping() -> None:
    """Identical models: zero NRI/IDI, no p-value; swapping old and new negates every estimate."""
    assert nri(Y, OLD, OLD) == {"nri": 0.0, "nri_events": 0.0, "nri_nonevents": 0.0}
    assert nri(Y, OLD, OLD, cutoffs=[0.3]) == {"nri": 0.0, "nri_events": 0.0, "nri_nonevents": 0.0}
    assert idi(Y, OLD, OLD) == {"idi": 0.0}
    for cutoffs in (None, [0.2, 0.5]):
        forward, backward = nri(Y, OLD, NEW, cutoffs), nri(Y, NEW, OLD, cutoffs)
        for key in ("nri", "nri_events", "nri_nonevents"):
            assert backward[key] == pytest.approx(-forward[key])
        assert backward["nri_p"] == pytest.approx(forward["nri_p"])
    assert idi(Y, NEW, OLD)["idi"] == pytest.approx(-idi(Y, OLD, NEW)["idi"])


def test_better_model_detected() -> None:
    """A new model adding a strong marker gives positive NRI and IDI with small p-values."""
    rng = np.random.default_rng(0)
    n = 1000
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(-1 + 0.5 * x1 + 1.5 * x2)))).astype(int)
    old = 1 / (1 + np.exp(-(-0.9 + 0.5 * x1)))
    new = 1 / (1 + np.exp(-(-1 + 0.5 * x1 + 1.5 * x2)))
    for out in (nri(y, old, new), nri(y, old, new, cutoffs=[0.1, 0.3])):
        assert out["nri"] > 0.2 and out["nri_p"] < 1e-6
    got = idi(y, old, new)
    assert got["idi"] > 0.1 and got["idi_p"] < 1e-6


def test_degenerate_inputs() -> None:
    """One class gives {}; a single event gives IDI without p; bad cutoffs or lengths raise."""
    assert nri([1, 1, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1]) == {}
    assert idi([0, 0], [0.1, 0.2], [0.3, 0.2]) == {}
    assert set(idi([1, 0, 0], [0.1, 0.2, 0.3], [0.3, 0.1, 0.2])) == {"idi"}
    with pytest.raises(ValueError):
        nri(Y, OLD, NEW, cutoffs=[0.5, 0.2])
    with pytest.raises(ValueError):
        nri(Y, OLD, NEW[:-1])
