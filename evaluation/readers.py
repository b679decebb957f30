"""Radiologists' calls against the models, computed at the site: agreement, accuracy and paired tests.

A reader column holds a binary call (1: metastasis called) or an ordinal score (BI-RADS 2 to 5);
seeds 000 and 001 compare such readers with the models by sensitivity and specificity (Wilson
intervals), Cohen's kappa with its standard error, the AUC of an ordinal score (DeLong, ties
counted half) and McNemar's paired test of each model's calls against the reader's on the same
cases. Only these statistics leave the site.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.inter_rater import cohens_kappa

from evaluation.classification import confusion_metrics
from evaluation.delong import delong_auc
from evaluation.proportions import proportion_cis


def kappa(a: ArrayLike, b: ArrayLike) -> dict[str, float]:
    """Cohen's kappa of two raters' binary calls on the same cases, with its asymptotic standard error and 95% CI."""
    a, b = np.asarray(a, dtype=int), np.asarray(b, dtype=int)
    table = np.array([[np.sum((a == i) & (b == j)) for j in (0, 1)] for i in (0, 1)])
    result = cohens_kappa(table)
    return {"kappa": float(result.kappa), "kappa_se": float(result.std_kappa), "kappa_ci": [float(result.kappa_low), float(result.kappa_upp)]}


def reader_metrics(labels: ArrayLike, calls: ArrayLike) -> dict[str, Any]:
    """A reader's binary calls against the truth: sensitivity, specificity, PPV, NPV, accuracy with Wilson CIs, and kappa with the truth."""
    y, c = np.asarray(labels, dtype=int), np.asarray(calls, dtype=int)
    tp, fp = int(np.sum((c == 1) & (y == 1))), int(np.sum((c == 1) & (y == 0)))
    tn, fn = int(np.sum((c == 0) & (y == 0))), int(np.sum((c == 0) & (y == 1)))
    out: dict[str, Any] = dict(confusion_metrics(tp, fp, tn, fn))
    out.update(proportion_cis(tp, fp, tn, fn))
    out.update(kappa(y, c))
    return out


def ordinal_auc(labels: ArrayLike, scores: ArrayLike) -> dict[str, Any]:
    """The AUC of an ordinal reader score (e.g. BI-RADS) with its DeLong CI; tied scores count half."""
    result = delong_auc(labels, np.asarray(scores, dtype=float))
    return {"auc": result.auc, "auc_ci": list(result.ci)}


def paired_calls(labels: ArrayLike, reader: ArrayLike, model: ArrayLike) -> dict[str, float]:
    """McNemar's exact test of a model's calls against a reader's, on the positives (sensitivity) and the negatives (specificity)."""
    y, r, m = (np.asarray(v, dtype=int) for v in (labels, reader, model))
    out: dict[str, float] = {}
    for name, group in (("sensitivity", y == 1), ("specificity", y == 0)):
        right_r, right_m = r[group] == y[group], m[group] == y[group]
        table = [[int(np.sum(right_r & right_m)), int(np.sum(right_r & ~right_m))], [int(np.sum(~right_r & right_m)), int(np.sum(~right_r & ~right_m))]]
        out[f"mcnemar_{name}_p"] = float(mcnemar(table, exact=True).pvalue)
    return out
