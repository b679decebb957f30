"""Dice, IoU, precision and recall against hand-computed values, empty masks included."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.segmentation_metrics import segmentation_scores, summarize


def _mask(cells: list[tuple[int, int]], size: int = 4) -> torch.Tensor:
    m = torch.zeros(1, 1, size, size)
    for r, c in cells:
        m[0, 0, r, c] = 1
    return m


def test_overlapping_masks_match_hand_computation() -> None:
    truth = _mask([(0, 0), (0, 1), (1, 0), (1, 1)])  # 4 pixels
    pred = _mask([(0, 1), (1, 1), (2, 1)])  # 3 pixels, 2 of them right
    s = segmentation_scores(pred, truth)
    # tp=2, fp=1, fn=2: Dice 2*2/(3+4), IoU 2/5, precision 2/3, recall 2/4
    assert s["dice"][0] == pytest.approx(4 / 7) and s["iou"][0] == pytest.approx(2 / 5)
    assert s["precision"][0] == pytest.approx(2 / 3) and s["recall"][0] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("pred_cells", "truth_cells", "want"),
    [
        ([], [], (1, 1, 1, 1)),
        ([(0, 0)], [], (0, 0, 0, 1)),
        ([], [(0, 0)], (0, 0, 0, 0)),
    ],
)
def test_empty_masks_get_the_documented_numbers_not_nan(pred_cells: list, truth_cells: list, want: tuple) -> None:
    s = segmentation_scores(_mask(pred_cells), _mask(truth_cells))
    got = tuple(float(s[k][0]) for k in ("dice", "iou", "precision", "recall"))
    assert got == want and not any(np.isnan(got))


def test_summary_counts_empty_cases_and_averages_per_case() -> None:
    pred = torch.cat([_mask([(0, 0)]), _mask([]), _mask([(1, 1)])])
    truth = torch.cat([_mask([(0, 0)]), _mask([]), _mask([])])
    summary = summarize(segmentation_scores(pred, truth))
    assert summary["n"] == 3 and summary["n_truth_empty"] == 2 and summary["n_pred_empty"] == 1
    assert summary["dice"] == pytest.approx((1 + 1 + 0) / 3) and summary["recall"] == pytest.approx(1.0)
    assert summary["dice_sd"] == pytest.approx(np.std([1, 1, 0], ddof=1))


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="expected two"):
        segmentation_scores(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
