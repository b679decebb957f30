"""Paired comparisons: every other model against the reference, left out when a class has fewer than two cases."""

from __future__ import annotations

import numpy as np

from evaluation.delong import delong_test
from evaluation.paired import paired_comparisons


def test_one_row_per_other_model_with_delong_nri_and_idi() -> None:
    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 15)
    scores = {"federated": labels * 0.6 + rng.random(30) * 0.5, "local:a": rng.random(30), "pooled": labels * 0.3 + rng.random(30)}
    rows = paired_comparisons(labels, scores, "federated")
    assert [(r["model_a"], r["model_b"]) for r in rows] == [("federated", "local:a"), ("federated", "pooled")]
    assert (rows[0]["delong_z"], rows[0]["delong_p"]) == delong_test(labels, scores["federated"], scores["local:a"])
    assert {"nri", "idi", "idi_p"} <= set(rows[0])


def test_a_test_split_with_one_case_of_a_class_gives_no_comparison_instead_of_an_error() -> None:
    labels = np.array([0, 1, 0, 0])
    assert paired_comparisons(labels, {"federated": np.array([0.1, 0.9, 0.2, 0.3]), "pooled": np.array([0.4, 0.5, 0.6, 0.1])}, "federated") == []
