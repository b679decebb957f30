"""Paired comparisons of one reference model with others on the same cases: DeLong, NRI and IDI."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from evaluation.delong import delong_test
from evaluation.reclassification import idi, nri

MIN_PER_CLASS = 2  # DeLong's test for correlated AUCs needs two cases of each class


def paired_comparisons(labels: np.ndarray, scores: Mapping[str, np.ndarray], reference: str) -> list[dict[str, Any]]:
    """One row per other model: DeLong z and p, category-free NRI and IDI, with ``reference`` as the new model.

    No rows when the cases hold fewer than ``MIN_PER_CLASS`` of either class (a small site's
    test split): the comparison is left out, not raised, so one small site never stops a run.
    """
    labels = np.asarray(labels)
    if min(int((labels == 0).sum()), int((labels == 1).sum())) < MIN_PER_CLASS:
        return []
    ref = scores[reference]
    rows: list[dict[str, Any]] = []
    for name, other in scores.items():
        if name == reference:
            continue
        row: dict[str, Any] = {"model_a": reference, "model_b": name}
        row["delong_z"], row["delong_p"] = delong_test(labels, ref, other)
        row.update(nri(labels, other, ref))
        row.update(idi(labels, other, ref))
        rows.append(row)
    return rows
