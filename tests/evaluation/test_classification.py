"""Tests for binary_metrics and confusion_metrics against scikit-learn."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from evaluation.classification import binary_metrics, confusion_metrics
from evaluation.delong import delong_auc


@pytest.mark.parametrize(("seed", "threshold"), [(0, 0.5), (1, 0.3), (2, 0.7), (3, 0.5)])
def test_matches_sklearn(seed: int, threshold: float) -> None:
    """All proportions, AP, Brier and AUC agree with scikit-learn on random data."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 250)
    s = np.round(np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0.0, 1.0), 2)
    pred = (s >= threshold).astype(int)
    m = binary_metrics(y, s, threshold)
    tn, fp, fn, tp = confusion_matrix(y, pred).ravel()
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (tp, fp, tn, fn)
    assert m["n"] == 250 and m["n_positive"] == int(y.sum()) and m["threshold"] == threshold
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["sensitivity"] == pytest.approx(recall_score(y, pred))
    assert m["specificity"] == pytest.approx(recall_score(y, pred, pos_label=0))
    assert m["ppv"] == pytest.approx(precision_score(y, pred))
    assert m["npv"] == pytest.approx(precision_score(y, pred, pos_label=0))
    assert m["f1"] == pytest.approx(f1_score(y, pred))
    assert m["kappa"] == pytest.approx(cohen_kappa_score(y, pred))
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, s))
    assert m["brier"] == pytest.approx(brier_score_loss(y, s))
    assert m["auc"] == pytest.approx(roc_auc_score(y, s))
    assert m["auc_ci"] == pytest.approx(list(delong_auc(y, s).ci))


def test_plain_json_types() -> None:
    """Values are plain Python ints/floats/lists and the dict is JSON-serialisable."""
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 50)
    m = binary_metrics(y, rng.random(50), 0.5)
    json.dumps(m)
    for key in ("n", "n_positive", "tp", "fp", "tn", "fn"):
        assert type(m[key]) is int
    for key in ("auc", "accuracy", "kappa", "pr_auc", "brier", "threshold"):
        assert type(m[key]) is float
    assert isinstance(m["auc_ci"], list) and all(type(v) is float for v in m["auc_ci"])


def test_no_positive_predictions_omits_ppv() -> None:
    """All cases predicted negative: ppv is omitted (not NaN), sensitivity is 0, f1 is 0."""
    y = np.array([0, 1, 0, 1, 1, 0])
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    m = binary_metrics(y, s, threshold=0.9)
    assert "ppv" not in m
    assert m["sensitivity"] == 0.0 and m["specificity"] == 1.0 and m["f1"] == 0.0
    assert "kappa" in m and m["kappa"] == pytest.approx(cohen_kappa_score(y, np.zeros(6, dtype=int)))
    assert not any(isinstance(v, float) and np.isnan(v) for v in m.values())


def test_single_class_omits_auc() -> None:
    """Only negatives present: no auc, auc_ci, pr_auc or sensitivity; specificity remains."""
    y = np.zeros(5, dtype=int)
    s = np.array([0.1, 0.2, 0.6, 0.3, 0.4])
    m = binary_metrics(y, s, 0.5)
    for key in ("auc", "auc_ci", "pr_auc", "sensitivity"):
        assert key not in m
    assert m["specificity"] == pytest.approx(0.8)
    assert m["brier"] == pytest.approx(float(np.mean(s**2)))
    assert m["kappa"] == pytest.approx(cohen_kappa_score(y, (s >= 0.5).astype(int)))
    assert "kappa" not in binary_metrics(y, s, 0.9)  # chance agreement is 1: kappa undefined


def test_singleton_class_keeps_auc_without_ci() -> None:
    """With one positive case the AUC is defined but its DeLong CI is omitted."""
    y = np.array([0, 0, 0, 1])
    s = np.array([0.1, 0.5, 0.2, 0.4])
    m = binary_metrics(y, s, 0.5)
    assert m["auc"] == pytest.approx(roc_auc_score(y, s))
    assert "auc_ci" not in m


def test_scores_outside_unit_interval_omit_brier() -> None:
    """Non-probability scores (logits) give no Brier score but keep ranking metrics."""
    y = np.array([0, 1, 0, 1])
    m = binary_metrics(y, [-2.0, 1.5, 0.3, 2.0], 0.0)
    assert "brier" not in m and "auc" in m


def test_confusion_metrics_omissions() -> None:
    """Zero denominators omit the corresponding keys; kappa omitted when chance agreement is 1."""
    assert confusion_metrics(0, 0, 0, 0) == {}
    only_tn = confusion_metrics(0, 0, 5, 0)
    assert set(only_tn) == {"accuracy", "specificity", "npv"}
    full = confusion_metrics(8, 2, 6, 4)
    assert full == pytest.approx(
        {"accuracy": 0.7, "sensitivity": 8 / 12, "specificity": 0.75, "ppv": 0.8, "npv": 0.6,
         "f1": 16 / 22, "kappa": (0.7 - 0.5) / 0.5}
    )
    with pytest.raises(ValueError):
        confusion_metrics(-1, 0, 0, 0)


def test_invalid_labels_raise() -> None:
    """Non-binary labels or length mismatch raise ValueError."""
    with pytest.raises(ValueError):
        binary_metrics([0, 2], [0.1, 0.2], 0.5)
    with pytest.raises(ValueError):
        binary_metrics([0, 1], [0.1], 0.5)
