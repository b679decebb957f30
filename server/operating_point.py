"""Choose the operating point once, on validation aggregates, before testing anywhere."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from evaluation.thresholds import pool_histograms, threshold_from_histograms
from models.run_config import RunConfig


def threshold_from_site_metrics(per_site: Iterable[Mapping[str, Any]], cfg: RunConfig) -> float:
    """Pool the sites' validation score histograms and apply the run config's rule."""
    pairs = [(m["hist_pos"], m["hist_neg"]) for m in per_site if "hist_pos" in m and "hist_neg" in m]
    if not pairs:
        raise ValueError("no validation histograms to choose an operating point from")
    pos, neg = pool_histograms(pairs)
    target = cfg.threshold_target if cfg.threshold_rule in ("sensitivity", "specificity") else None
    return threshold_from_histograms(pos, neg, cfg.threshold_rule, target)
