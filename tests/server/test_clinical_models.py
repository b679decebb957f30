"""The clinical stage's pure parts: cross-validation folds sized to the sites' small-cell rules."""

from __future__ import annotations

import pytest

from server.clinical_models import cv_folds
from server.clinical_schema import ClinicalError


def test_folds_shrink_until_every_sites_smallest_fold_keeps_its_small_cell_count() -> None:
    # 5 folds of (11, 9) cases hold floor(11/5) + floor(9/5) = 3 cases at least; 4 folds 2 + 2 = 4; 3 folds 3 + 3 = 6.
    assert cv_folds({"a": (40, 40), "b": (11, 9)}, 5, {"a": 5, "b": 5}) == 3
    assert cv_folds({"a": (40, 40), "b": (11, 9)}, 5, {"a": 5, "b": 3}) == 5
    assert cv_folds({"a": (40, 40)}, 10, {"a": 5}) == 10


def test_a_site_too_small_for_two_folds_is_named_with_its_rule() -> None:
    with pytest.raises(ClinicalError, match=r"site b has 7 complete training case\(s\) \(3 N\+\).*min_cell_count=5"):
        cv_folds({"a": (40, 40), "b": (4, 3)}, 5, {"a": 5, "b": 5})
