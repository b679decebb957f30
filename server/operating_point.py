"""Choose the operating point once, on validation aggregates, before testing anywhere."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from evaluation.thresholds import pool_histograms, threshold_from_histograms
from models.run_config import RunConfig

logger = logging.getLogger("axilla.server")

MIDPOINT = 0.5  # the operating point when validation holds one class only: the probability midpoint (equal costs, calibrated scores)


def threshold_from_site_metrics(per_site: Iterable[Mapping[str, Any]], cfg: RunConfig) -> float:
    """Pool the sites' validation score histograms and apply the run config's rule (the midpoint 0.5 when validation lacks a class).

    A local-only baseline at a small site can have a validation split of one class; its test rows are
    then cut at 0.5 (their ``threshold``), its AUC is unaffected, and the run goes on.
    """
    pairs = [(m["hist_pos"], m["hist_neg"]) for m in per_site if "hist_pos" in m and "hist_neg" in m]
    if not pairs:
        raise ValueError("no validation histograms to choose an operating point from")
    pos, neg = pool_histograms(pairs)
    if one_class(pos, neg):
        logger.warning(
            "operating point: the validation cases hold %d positive and %d negative cases, so the '%s' rule cannot be applied; "
            "threshold %.1f (the probability midpoint) is used instead", sum(pos), sum(neg), cfg.threshold_rule, MIDPOINT,
        )  # fmt: skip
        return MIDPOINT
    target = cfg.threshold_target if cfg.threshold_rule in ("sensitivity", "specificity") else None
    return threshold_from_histograms(pos, neg, cfg.threshold_rule, target)


def one_class(pos: list[int], neg: list[int]) -> bool:
    """Whether pooled validation histograms hold cases of one class only (no rule applies: the midpoint is used)."""
    return sum(pos) == 0 or sum(neg) == 0


def midpoint_used(per_site: Iterable[Mapping[str, Any]]) -> bool:
    """Whether ``threshold_from_site_metrics`` fell back to the midpoint for these validation metrics."""
    pairs = [(m["hist_pos"], m["hist_neg"]) for m in per_site if "hist_pos" in m and "hist_neg" in m]
    return bool(pairs) and one_class(*pool_histograms(pairs))
