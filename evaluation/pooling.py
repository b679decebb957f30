"""Curves per (model, site) and rows pooled across sites, from the aggregates sites send.

Sites send per-class score histograms (200 bins over [0, 1]), confusion counts and scalars;
nothing here sees a per-case score. Pooled rows are exact for counts and for every quantity
evaluated at a bin edge; the AUC and its DeLong CI, PR-AUC and Hosmer-Lemeshow treat scores
as their bin centres (resolution 0.005).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from scipy.stats import chi2

from evaluation.aggregates import (
    DCA_THRESHOLDS,
    auc_from_histograms,
    confusion_from_histograms,
    net_benefit_from_histograms,
    roc_from_histograms,
    treat_all_net_benefit,
)
from evaluation.calibration import calibration_curve_from_histograms
from evaluation.classification import confusion_metrics
from evaluation.roc_band import ROC_GRID
from evaluation.thresholds import HIST_BINS, pool_histograms

POOLING = {
    "method": "sum of per-class score histograms and confusion counts sent by the sites",
    "bins": HIST_BINS,
    "resolution": 1.0 / HIST_BINS,
}
_DIGITS = 5


def curves(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """ROC (with the site's bootstrap band if sent), calibration and decision curves from aggregates."""
    out: dict[str, Any] = {}
    if "hist_pos" not in metrics or "hist_neg" not in metrics:
        return out
    pos, neg = metrics["hist_pos"], metrics["hist_neg"]
    if sum(pos) and sum(neg):
        out["roc"] = _rounded(roc_from_histograms(pos, neg))
    if "roc_tpr_lo" in metrics and "roc_tpr_hi" in metrics:
        out["roc_band"] = _rounded({"fpr": list(ROC_GRID), "tpr_lo": metrics["roc_tpr_lo"], "tpr_hi": metrics["roc_tpr_hi"]})
    out["calibration"] = _rounded(calibration_curve_from_histograms(pos, neg))
    n = sum(pos) + sum(neg)
    if n:
        out["decision"] = _rounded(
            {
                "thresholds": list(DCA_THRESHOLDS),
                "net_benefit": net_benefit_from_histograms(pos, neg, DCA_THRESHOLDS),
                "treat_all": treat_all_net_benefit(sum(pos), n, DCA_THRESHOLDS),
            }
        )
    return out


MIDPOINT_FLAG = "threshold_midpoint"  # 1: the operating point is the midpoint 0.5, validation having held one class only (server/operating_point.py)
THRESHOLD_KEYS = ("threshold", "tp", "fp", "tn", "fn", "accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "kappa")


def at_threshold(metrics: Mapping[str, Any], threshold: float) -> dict[str, Any]:
    """A split's metrics re-cut at another bin-edge threshold, from its histograms (exact, no re-evaluation); unchanged without cases scored."""
    if "hist_pos" not in metrics:
        return dict(metrics)
    out = {k: v for k, v in metrics.items() if k not in THRESHOLD_KEYS}
    tp, fp, tn, fn = confusion_from_histograms(metrics["hist_pos"], metrics["hist_neg"], threshold)
    out.update({"threshold": float(threshold), "tp": tp, "fp": fp, "tn": tn, "fn": fn})
    out.update(confusion_metrics(tp, fp, tn, fn))
    return out


def pooled_metrics(per_site: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One model's metrics over several sites' cases, from their aggregates only."""
    pos, neg = pool_histograms((m["hist_pos"], m["hist_neg"]) for m in per_site)
    counts = {k: sum(int(m[k]) for m in per_site) for k in ("tp", "fp", "tn", "fn")}
    n, n_pos = sum(pos) + sum(neg), sum(pos)
    out: dict[str, Any] = {"n": n, "n_positive": n_pos, **counts, "hist_pos": pos, "hist_neg": neg}
    thresholds = {m["threshold"] for m in per_site}
    if len(thresholds) == 1:
        out["threshold"] = thresholds.pop()
    if per_site and all(m.get(MIDPOINT_FLAG) for m in per_site):
        out[MIDPOINT_FLAG] = 1.0
    out.update(confusion_metrics(**counts))
    if all("brier" in m for m in per_site) and n:
        out["brier"] = sum(m["brier"] * m["n"] for m in per_site) / n
    if n_pos and n - n_pos:
        result = auc_from_histograms(pos, neg)
        out["auc"] = result.auc
        if result.variance > 0:
            out["auc_ci"] = list(result.ci)
        out["pr_auc"] = average_precision_from_histograms(pos, neg)
        out.update(hosmer_lemeshow_grouped(calibration_curve_from_histograms(pos, neg)))
    return out


def average_precision_from_histograms(pos: Sequence[int], neg: Sequence[int]) -> float:
    """Average precision (step-wise, ties within a bin grouped) from per-class histograms."""
    total_pos = sum(pos)
    tp = fp = 0
    ap = 0.0
    for p, q in zip(reversed(pos), reversed(neg)):
        if p == 0 and q == 0:
            continue
        tp, fp = tp + p, fp + q
        ap += (p / total_pos) * (tp / (tp + fp))
    return ap


def hosmer_lemeshow_grouped(curve: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """Hosmer-Lemeshow from grouped (mean predicted, observed rate, n); df = groups - 2."""
    groups = [(p, o, n) for p, o, n in zip(curve["predicted"], curve["observed"], curve["n"]) if 0 < p < 1 and n > 0]
    if len(groups) < 3:
        return {}
    stat = sum(n * (o - p) ** 2 / (p * (1 - p)) for p, o, n in groups)
    df = len(groups) - 2
    return {"hl_stat": stat, "hl_df": df, "hl_p": float(chi2.sf(stat, df))}


def _rounded(curve: Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
    """Round curve coordinates so report.json stays small and stable."""
    return {k: [round(float(v), _DIGITS) for v in values] for k, values in curve.items()}
