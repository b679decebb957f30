"""Nomogram: points per variable, and total points read back as the model's own predicted probability."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.nomogram import MAX_POINTS, build_nomogram, nomogram_png
from models.federated_logit import INTERCEPT, LogitFit

FIT = LogitFit((INTERCEPT, "signature", "age", "her2"), np.array([-2.0, 1.5, -0.03, 0.9]), np.ones(4), -100.0, 300, 90, 6)
COEF = dict(zip(FIT.names, FIT.coef))
RANGES = {"signature": (-2.0, 3.0), "age": (30.0, 80.0), "her2": (0.0, 1.0)}


def test_total_points_map_back_to_the_models_probability() -> None:
    nomogram = build_nomogram(COEF, RANGES)
    rng = np.random.default_rng(0)
    for _ in range(20):
        case = {name: rng.uniform(*RANGES[name]) for name in RANGES}
        eta = FIT.coef[0] + sum(c * case[n] for n, c in zip(FIT.names[1:], FIT.coef[1:]))
        assert nomogram.probability(nomogram.total_points(case)) == pytest.approx(1 / (1 + math.exp(-eta)), rel=1e-12)


def test_the_largest_effect_spans_the_points_ruler_and_a_protective_variable_scores_its_low_end() -> None:
    scales = {s.name: s for s in build_nomogram(COEF, RANGES).scales}
    assert (scales["signature"].points_low, scales["signature"].points_high) == (0.0, MAX_POINTS)  # 1.5 x 5 = 7.5, the largest
    assert scales["age"].points_low == pytest.approx(0.03 * 50 / 7.5 * MAX_POINTS) and scales["age"].points_high == 0.0
    assert scales["her2"].points_high == pytest.approx(0.9 / 7.5 * MAX_POINTS)


def test_the_figure_is_a_png_and_a_variable_without_a_range_is_named() -> None:
    assert nomogram_png(build_nomogram(COEF, RANGES, binary={"her2"})).startswith(b"\x89PNG")
    assert build_nomogram(COEF, {"signature": (-2.0, 3.0), "age": (30.0, 80.0)}, binary={"her2"}).scales[2].binary
    with pytest.raises(ValueError, match="no value range for her2"):
        build_nomogram(COEF, {"signature": (0, 1), "age": (30, 80)})


def test_an_ordinal_axis_ticks_its_levels_at_their_ranks_and_a_binary_one_says_no_and_yes() -> None:
    coef = {INTERCEPT: -1.0, "grade": 0.5, "her2": 0.8}
    scales = {s.name: s for s in build_nomogram(coef, {"grade": (0.0, 2.0)}, binary={"her2"}, levels={"grade": ["1", "2", "3"]}).scales}
    assert scales["grade"].ticks() == [(0.0, "1"), (pytest.approx(100 * 0.5 / 1.0), "2"), (pytest.approx(100.0), "3")]
    assert [label for _, label in scales["her2"].ticks()] == ["no", "yes"] and scales["her2"].ticks()[1][0] == pytest.approx(80.0)


def test_a_categorical_variable_is_one_axis_of_its_levels_and_a_case_reads_back_its_probability() -> None:
    coef = {INTERCEPT: -1.0, "type[ILC]": 0.4, "type[DCIS]": -1.6, "size": 0.05}
    nomogram = build_nomogram(coef, {"size": (10.0, 50.0)}, categorical={"type": {"IDC": None, "ILC": "type[ILC]", "DCIS": "type[DCIS]"}})
    (size, kind) = nomogram.scales
    assert kind.ticks() == [(0.0, "DCIS"), (pytest.approx(1.6 / 2.0 * MAX_POINTS), "IDC"), (pytest.approx(MAX_POINTS), "ILC")]  # span 2.0, the largest
    for level, indicator in (("IDC", 0.0), ("ILC", 0.4), ("DCIS", -1.6)):
        eta = -1.0 + indicator + 0.05 * 30.0
        assert nomogram.probability(nomogram.total_points({"size": 30.0, "type": level})) == pytest.approx(1 / (1 + math.exp(-eta)), rel=1e-12)
