"""Every metric name a site may send, in one style (snake_case), with the length of the list ones.

A scalar metric has length ``None``; a list metric has a length fixed by the protocol (a CI, the
score histograms, the ROC band's FPR grid) and never by the number of cases, except the
per-case lists that only a site that opted in may send. The privacy guard
allows exactly these names; the segmentation evaluation of several candidates sends them as
``<candidate>/<name>``.
"""

from __future__ import annotations

from evaluation.roc_band import ROC_GRID
from evaluation.thresholds import HIST_BINS
from models.run_config import MODALITIES

NUM_EXAMPLES = "num_examples"  # cases a reply is about; FedAvg's weight
CANDIDATE_SEPARATOR = "/"
PER_CASE = -1  # a list with one value per case: only from a site with ``privacy.share_case_predictions``
PER_FEATURE = -2  # a list with one value per feature of a standardiser the message names (``moments:<module>/<name>``)
MOMENT_METRICS = ("moment_n", "moment_sum", "moment_sumsq")  # per feature: cases with a value, their sum and sum of squares

_SCALARS = (
    # training
    NUM_EXAMPLES, "train_loss", "steps",
    # classification at a threshold, and threshold-free
    "loss", "n", "n_positive", "threshold", "tp", "fp", "tn", "fn",
    "accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "kappa", "auc", "pr_auc", "brier",
    "calibration_slope", "calibration_intercept", "hl_stat", "hl_df", "hl_p",
    # segmentation (over the cases with a ground-truth mask)
    "seg_n", "seg_dice", "seg_dice_sd", "seg_iou", "seg_iou_sd", "seg_precision", "seg_precision_sd",
    "seg_recall", "seg_recall_sd", "seg_n_truth_empty", "seg_n_pred_empty",
    # inputs and explanations; a multimodal model's cases having each modality
    "crops_without_lesion", "grad_cam_written", *(f"n_{modality}" for modality in MODALITIES),
    # a personalised model (sent as ``personal/<name>``): the fine-tuning epochs chosen on validation
    "epochs",
    # a paired comparison with another model on the same cases (sent as ``vs:<stage>/<name>``)
    *(COMPARISON_METRICS := ("delong_z", "delong_p", "nri", "nri_events", "nri_nonevents", "nri_p", "idi", "idi_p")),
    # differential privacy of a DP-SGD training (client/dp_training.py): enough to recompute epsilon
    *(DP_METRICS := (
        "dp_epsilon", "dp_delta", "dp_noise_multiplier", "dp_sample_rate", "dp_steps", "dp_max_grad_norm", "dp_lifetime_epsilon",
    )),
)  # fmt: skip
_LISTS = {
    "auc_ci": 2,
    "hist_pos": HIST_BINS,
    "hist_neg": HIST_BINS,
    "roc_tpr_lo": len(ROC_GRID),
    "roc_tpr_hi": len(ROC_GRID),
    "case_scores": PER_CASE,
    "case_labels": PER_CASE,
    **dict.fromkeys(MOMENT_METRICS, PER_FEATURE),
}
METRIC_LENGTHS: dict[str, int | None] = {**dict.fromkeys(_SCALARS), **_LISTS}


def candidate_metric(candidate: str, name: str) -> str:
    """The name of one candidate's metric in a multi-candidate reply."""
    return f"{candidate}{CANDIDATE_SEPARATOR}{name}"


def split_candidate_metric(key: str) -> tuple[str, str]:
    """(candidate, metric) of a multi-candidate metric name; ('', key) for a plain one."""
    candidate, sep, name = key.rpartition(CANDIDATE_SEPARATOR)
    return (candidate, name) if sep else ("", key)
