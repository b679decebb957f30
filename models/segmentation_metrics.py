"""Per-case segmentation quality (Dice, IoU, precision, recall) from MONAI metrics, empty masks explicit.

MONAI leaves precision and recall undefined (NaN) when their denominator is zero. Here every case
gets a number, by these rules (and the counts of such cases are reported beside the means):

| truth | prediction | Dice | IoU | precision | recall |
|---|---|---|---|---|---|
| empty | empty | 1 | 1 | 1 | 1 | (correctly found no lesion)
| empty | lesion | 0 | 0 | 0 | 1 | (nothing to miss; every predicted pixel is wrong)
| lesion | empty | 0 | 0 | 0 | 0 | (the lesion was missed entirely)
"""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import compute_dice, compute_iou, get_confusion_matrix

METRICS = ("dice", "iou", "precision", "recall")


def segmentation_scores(pred: torch.Tensor, truth: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-case scores of binary masks shaped (N, 1, H, W) (any dtype; nonzero = lesion)."""
    if pred.shape != truth.shape or pred.ndim != 4 or pred.shape[1] != 1:
        raise ValueError(f"expected two (N, 1, H, W) masks of one shape, got {tuple(pred.shape)} and {tuple(truth.shape)}")
    p, t = (pred != 0).float(), (truth != 0).float()
    dice = compute_dice(p, t, include_background=True, ignore_empty=False)[:, 0]
    iou = compute_iou(p, t, include_background=True, ignore_empty=False)[:, 0]
    tp, fp, _, fn = get_confusion_matrix(p, t, include_background=True)[:, 0].unbind(-1)
    pred_empty, truth_empty = (tp + fp) == 0, (tp + fn) == 0
    precision = torch.where(pred_empty, (pred_empty & truth_empty).float(), tp / (tp + fp).clamp(min=1))
    recall = torch.where(truth_empty, torch.ones_like(tp), tp / (tp + fn).clamp(min=1))
    out = {"dice": dice, "iou": iou, "precision": precision, "recall": recall}
    return {k: v.double().cpu().numpy() for k, v in out.items()} | {
        "truth_empty": truth_empty.cpu().numpy(),
        "pred_empty": pred_empty.cpu().numpy(),
    }


def summarize(scores: dict[str, np.ndarray]) -> dict[str, float | int]:
    """Means and SDs over cases, with the number of cases and of empty truths and predictions."""
    n = len(scores["dice"])
    out: dict[str, float | int] = {"n": n, "n_truth_empty": int(scores["truth_empty"].sum()), "n_pred_empty": int(scores["pred_empty"].sum())}
    for key in METRICS:
        values = scores[key]
        out[key] = float(values.mean()) if n else float("nan")
        out[f"{key}_sd"] = float(values.std(ddof=1)) if n > 1 else 0.0
    return out
