"""Readers against truth and models: kappa with its SE, Wilson intervals, ordinal AUC, McNemar."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from evaluation.classification import confusion_metrics
from evaluation.readers import kappa, ordinal_auc, paired_calls, reader_metrics


def _pairs(table: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    a, b = [], []
    for i in (0, 1):
        for j in (0, 1):
            a += [i] * table[i][j]
            b += [j] * table[i][j]
    return np.array(a), np.array(b)


def test_kappa_matches_the_textbook_value_and_the_confusion_metrics_kappa() -> None:
    a, b = _pairs([[20, 5], [10, 15]])  # agreement 0.70, chance 0.50: kappa 0.40
    result = kappa(a, b)
    assert result["kappa"] == pytest.approx(0.4)
    assert result["kappa_se"] == pytest.approx(np.sqrt(0.7 * 0.3 / (50 * 0.25)), rel=0.2)  # the simple large-sample SE, roughly
    assert result["kappa_ci"][0] < 0.4 < result["kappa_ci"][1]
    tp, fp, tn, fn = 15, 5, 20, 10  # b as the truth, a as the calls
    assert confusion_metrics(tp, fp, tn, fn)["kappa"] == pytest.approx(result["kappa"])


def test_reader_metrics_and_paired_calls() -> None:
    y = np.array([1] * 20 + [0] * 30)
    reader = np.array([1] * 15 + [0] * 5 + [1] * 6 + [0] * 24)
    metrics = reader_metrics(y, reader)
    assert metrics["sensitivity"] == pytest.approx(0.75) and metrics["specificity"] == pytest.approx(0.8)
    assert metrics["sensitivity_ci"][0] < 0.75 < metrics["sensitivity_ci"][1]
    model = np.array([1] * 19 + [0] * 1 + [1] * 12 + [0] * 18)
    p = paired_calls(y, reader, model)
    assert p["mcnemar_sensitivity_p"] == pytest.approx(0.125)  # 4 discordant pairs, all for the model: 2 * 0.5^4
    assert 0 < p["mcnemar_specificity_p"] < 0.05  # 6 discordant pairs, all for the reader: 2 * 0.5^6


def test_the_auc_of_an_ordinal_score_counts_ties_half() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 1])
    birads = np.array([2, 3, 3, 4, 4, 5, 4, 5, 2, 3])
    assert ordinal_auc(y, birads)["auc"] == pytest.approx(roc_auc_score(y, birads))
