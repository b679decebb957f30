"""The operating point chosen on pooled validation histograms."""

from __future__ import annotations

import logging

import pytest

from evaluation.pooling import MIDPOINT_FLAG, pooled_metrics
from evaluation.text import threshold_text
from models.run_config import RunConfig
from server.operating_point import MIDPOINT, midpoint_used, threshold_from_site_metrics


def test_youden_threshold_from_two_sites_pooled_histograms() -> None:
    # Pooled: positives in bins 2 and 3, negatives in bins 0 and 1: every cut between them separates, Youden takes the highest TPR-FPR first edge.
    sites = [{"hist_pos": [0, 0, 1, 2], "hist_neg": [2, 1, 0, 0]}, {"hist_pos": [0, 0, 2, 0], "hist_neg": [1, 1, 0, 0]}]
    threshold = threshold_from_site_metrics(sites, RunConfig())
    assert threshold == pytest.approx(0.5)  # 4 bins over [0, 1]: bin 2 starts at 0.5


def test_one_class_validation_falls_back_to_the_midpoint_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    sites = [{"hist_pos": [0, 0, 0, 0], "hist_neg": [1, 2, 1, 0]}]
    with caplog.at_level(logging.WARNING, logger="axilla.server"):
        threshold = threshold_from_site_metrics(sites, RunConfig().replace(threshold_rule="sensitivity", threshold_target=0.9))
    assert threshold == MIDPOINT
    assert "0 positive and 4 negative" in caplog.text and "'sensitivity' rule cannot be applied" in caplog.text


def test_no_histograms_at_all_is_still_an_error() -> None:
    with pytest.raises(ValueError, match="no validation histograms"):
        threshold_from_site_metrics([{"auc": 0.5}], RunConfig())


def test_the_midpoint_is_flagged_only_when_pooled_validation_holds_one_class() -> None:
    assert midpoint_used([{"hist_pos": [0, 0], "hist_neg": [1, 2]}, {"hist_pos": [0, 0], "hist_neg": [0, 3]}])
    assert not midpoint_used([{"hist_pos": [0, 0], "hist_neg": [1, 2]}, {"hist_pos": [1, 0], "hist_neg": [0, 0]}])  # pooled: both classes
    assert not midpoint_used([{"auc": 0.5}])


def test_report_rows_say_why_their_threshold_is_the_midpoint() -> None:
    flagged = pooled_metrics([
        {"hist_pos": [0, 0], "hist_neg": [1, 1], "tp": 0, "fp": 1, "tn": 1, "fn": 0, "threshold": 0.5, MIDPOINT_FLAG: 1.0},
        {"hist_pos": [0, 0], "hist_neg": [2, 0], "tp": 0, "fp": 0, "tn": 2, "fn": 0, "threshold": 0.5, MIDPOINT_FLAG: 1.0},
    ])  # fmt: skip
    assert flagged[MIDPOINT_FLAG] == 1.0
    assert threshold_text(flagged) == "0.500 (midpoint: validation had one class)"
    assert threshold_text({"threshold": 0.5}) == "0.500"
