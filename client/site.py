"""Plain site functions (no Flower): describe the site, load a stage's inputs, train one round, evaluate a split."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from client.data import SiteData, load_site_data, pool_site_data
from client.errors import SiteDataError
from client.grad_cam import safe_name, write_grad_cams
from client.lesion_data import lesion_site_data
from client.node_site import LocalSite
from client.site_config import SiteConfig
from client.training import Prediction, make_optimizer, predict, resolve_device, train_epochs
from evaluation.classification import binary_metrics
from evaluation.thresholds import score_histograms
from models.fusion import FusedSegmenter
from models.run_config import RunConfig
from models.segmentation_metrics import segmentation_scores, summarize
from models.stages import segmenter_config
from models.task import build_network, task_for
from protocol.metrics import NUM_EXAMPLES, candidate_metric

logger = logging.getLogger("axilla.client")
State = Mapping[str, torch.Tensor]

Metrics = dict[str, Any]


def model_for(cfg: RunConfig, state: State) -> nn.Module:
    """Build the run's network and load a state dict strictly."""
    model = build_network(cfg)
    model.load_state_dict(state, strict=True)
    return model


def fused_segmenter(cfg: RunConfig, states: Mapping[str, State], rule: str) -> nn.Module:
    """The ``segmenters`` of the run, loaded from ``states`` (by name) and fused by ``rule``."""
    missing = [name for name in cfg.segmenter_list if name not in states]
    if missing:
        raise SiteDataError.public_fact(f"the message refers to no weights for segmenter(s) {', '.join(missing)}")
    return FusedSegmenter([model_for(segmenter_config(cfg, name), states[name]) for name in cfg.segmenter_list], rule)


def segmentation_candidate(cfg: RunConfig, states: Mapping[str, State], label: str) -> nn.Module:
    """One of the pipeline's segmentation candidates: a segmenter by name, or ``fusion-<rule>`` of them all."""
    if label.startswith("fusion-"):
        return fused_segmenter(cfg, states, label.removeprefix("fusion-"))
    if label not in states:
        raise SiteDataError.public_fact(f"the message refers to no weights for segmenter {label}")
    return model_for(segmenter_config(cfg, label), states[label])


def evaluate_candidates(data: SiteData, cfg: RunConfig, states: Mapping[str, State], labels: list[str], split: str) -> Metrics:
    """Evaluate several segmentation candidates on one split; metrics keyed ``<candidate>/<metric>``."""
    out: Metrics = {}
    for label in labels:
        model = segmentation_candidate(cfg, states, label)
        out.update({candidate_metric(label, key): value for key, value in evaluate_split(data, model, cfg, split).items()})
    return out


def stage_data(config: SiteConfig, cfg: RunConfig, segmenters: Mapping[str, State] | None = None, digest: str = "") -> SiteData:
    """What the run's task trains and evaluates on at this site (the task's ``inputs``), in the splits of the stage's cross-validation fold.

    Whole images, clips of cine loops, or lesion crops cut with the ground-truth masks or with the fused
    ``segmenters`` the message refers to (``digest`` identifies their weights).
    """
    spec, folds = task_for(cfg).inputs(cfg), (cfg.cv_folds, cfg.cv_fold)
    if spec.modal is not None:
        from client.multimodal_data import load_multimodal_site_data, load_view_site_data

        if spec.views:
            return load_view_site_data(config, spec, folds)
        return load_multimodal_site_data(config, spec, folds, *_mass_segmenter(cfg, segmenters or {}, digest))
    if spec.frames:
        from client.cine_data import load_cine_site_data

        return load_cine_site_data(config, spec.size, spec.frames, folds)
    base = load_site_data(config, spec.size, folds)
    if spec.crop == "none":
        return base
    segmenter = fused_segmenter(cfg, dict(segmenters or {}), cfg.seg_fusion) if spec.needs_segmenters else None
    return lesion_site_data(base, cfg, segmenter, digest)


def _mass_segmenter(cfg: RunConfig, segmenters: Mapping[str, State], digest: str) -> tuple[nn.Module | None, str]:
    """The mass segmenter cutting the radiomics ROIs (``mammo-roi = predicted``) and its weights' digest; (None, '') for the manifest's masks."""
    if cfg.mammo_roi != "predicted" or "radiomics" not in cfg.modality_list:
        return None, ""
    if cfg.segmenter not in segmenters:
        raise SiteDataError.public_fact(f"the radiomics ROIs are cut by the mass segmenter '{cfg.segmenter}', and the message refers to no weights for it")
    return model_for(segmenter_config(cfg, cfg.segmenter), segmenters[cfg.segmenter]), digest


def node_data(site: LocalSite, cfg: RunConfig, segmenters: Mapping[str, State] | None = None, digest: str = "") -> SiteData:
    """A node's inputs: its site's, or the pooled baseline's members' pooled together."""
    parts = [stage_data(config, cfg, segmenters, digest) for config in site.members]
    return parts[0] if not site.pooled else pool_site_data(parts, site.name)


def train_round(
    data: SiteData, state: State, cfg: RunConfig, server_round: int, proximal_mu: float = 0.0, stage_offset: int = 0,
    total_rounds: int = 0, model_name: str = "federated", correction: Mapping[str, torch.Tensor] | None = None,
) -> tuple[dict[str, torch.Tensor], Metrics]:
    """Train the received global model locally for ``cfg.local_epochs`` epochs (with DP-SGD where the site requires it).

    ``server_round`` (numbered across a pipeline's stages) seeds the round; the learning-rate
    schedule restarts with each stage (``server_round - stage_offset``). Returns the updated
    state dict and scalar metrics; ``num_examples`` counts training cases. A site with
    ``privacy.dp.enabled`` trains with DP-SGD within its budget for ``model_name`` of the run over
    ``total_rounds`` (``client/dp_training.py``), records the spend in its ledger and adds the
    ``dp_*`` figures to the metrics; a round past a budget is refused (SiteDataError). With
    ``correction`` (SCAFFOLD's c - c_i by parameter), plain SGD steps (no momentum) follow the
    corrected gradients; a DP site refuses it.
    """
    task = task_for(cfg)
    if task.needs_masks:
        data.require_masks("train")
    dp = data.config.privacy.dp
    if len(data.splits["train"]) == 0:
        raise SiteDataError.public_fact(f"this site has no training case with this model's inputs ({_inputs_named(task, cfg)})")
    if dp.enabled and not task.dp_ready:
        raise SiteDataError.public_fact(f"this site trains only with DP-SGD, which the '{task.name}' task does not offer yet (its network reads several inputs per case)")
    if dp.enabled and cfg.model_variant != "dp-compatible":
        raise SiteDataError.public_fact(f"this site trains only with DP-SGD, and the run's network is the '{cfg.model_variant}' variant (it needs 'dp-compatible')")
    if dp.enabled and correction is not None:
        raise SiteDataError.public_fact(
            "this site trains only with DP-SGD, and SCAFFOLD's gradient correction would change the clipped gradients its privacy accounting covers"
        )
    model = model_for(cfg, state)
    seed = cfg.seed * 100_003 + server_round * 1009 + site_salt(data.config.site)
    torch.manual_seed(seed)
    device = resolve_device(data.config.compute.device)
    loader = data.loader("train", train=True, seed=seed)
    optimizer = make_optimizer(model, cfg.optimizer, cfg.round_lr(server_round - stage_offset), cfg.weight_decay, 0.0 if correction is not None else 0.9)
    if dp.enabled:
        return _train_round_dp(data, model, loader, task, optimizer, cfg, server_round, proximal_mu, stage_offset, total_rounds, model_name, device, seed)
    stats = train_epochs(
        model, loader, task, optimizer, cfg.local_epochs, device, proximal_mu=proximal_mu, desc=f"{data.config.site} round {server_round}", correction=correction,
    )  # fmt: skip
    new_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return new_state, {NUM_EXAMPLES: stats.num_examples, "train_loss": stats.loss, "steps": stats.steps}


def _train_round_dp(
    data: SiteData, model: nn.Module, loader: Any, task: Any, optimizer: torch.optim.Optimizer, cfg: RunConfig, server_round: int,
    proximal_mu: float, stage_offset: int, total_rounds: int, model_name: str, device: torch.device, seed: int,
) -> tuple[dict[str, torch.Tensor], Metrics]:
    """One round of DP-SGD: settings within the budgets, the training, the ledger entry, the figures."""
    from client.dp_training import round_settings, train_epochs_dp  # noqa: PLC0415 (Opacus only where DP runs)
    from client.privacy_ledger import PrivacyLedger, Spend, of_model  # noqa: PLC0415

    dp, config = data.config.privacy.dp, data.config
    run = cfg.run_id or "unnamed-run"
    remaining = (total_rounds or stage_offset + cfg.num_rounds) - server_round + 1
    ledger = PrivacyLedger(config.output_dir)
    with ledger.locked():
        entries = ledger.entries()
        settings = round_settings(
            dp, len(data.splits["train"]), cfg.dp_batch_size, cfg.local_epochs, remaining,
            of_model(entries, run, model_name), entries, run, model_name, server_round,
        )  # fmt: skip
        stats = train_epochs_dp(model, loader, task, optimizer, settings, device, seed, proximal_mu)
        ledger.record(Spend(run, model_name, server_round, settings.noise_multiplier, settings.sample_rate, settings.steps, settings.delta), entries)
    logger.info(
        "%s round %d: DP-SGD sigma %.3f, q %.4f, %d steps: epsilon %.3f -> %.3f of %g (delta %g); lifetime %.3f",
        config.site, server_round, settings.noise_multiplier, settings.sample_rate, settings.steps,
        settings.epsilon_before, settings.epsilon_after, dp.target_epsilon, dp.delta, settings.lifetime_after,
    )  # fmt: skip
    new_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return new_state, {
        NUM_EXAMPLES: stats.num_examples, "train_loss": stats.loss, "steps": stats.steps,
        "dp_epsilon": settings.epsilon_after, "dp_delta": settings.delta, "dp_noise_multiplier": settings.noise_multiplier,
        "dp_sample_rate": settings.sample_rate, "dp_steps": stats.steps, "dp_max_grad_norm": settings.max_grad_norm,
        "dp_lifetime_epsilon": settings.lifetime_after,
    }  # fmt: skip


def evaluate_split(
    data: SiteData, model: nn.Module, cfg: RunConfig, split: str, threshold: float = 0.5, grad_cam_folder: str = ""
) -> Metrics:
    """Evaluate a model on one split; only aggregates are returned.

    Case probabilities give AUC with DeLong CI, proportions at ``threshold``, calibration and
    the per-class score histograms from which the server picks an operating point. Lesion maps
    give Dice, IoU, precision and recall (``seg_`` keys) over the cases with a ground-truth mask.
    With ``grad_cam_folder``, Grad-CAM overlays of a few of the same cases are written at the site.
    """
    if len(data.splits[split]) == 0:
        return {NUM_EXAMPLES: 0, "n": 0, **data.modality_counts(split)}
    out = predict(model, data.loader(split, train=False), task_for(cfg), resolve_device(data.config.compute.device))
    metrics: Metrics = {NUM_EXAMPLES: int(len(out.labels)), "loss": out.loss}
    if out.scores is not None:
        metrics.update(classification_metrics(out.labels, out.scores, threshold))
    if out.masks is not None:
        metrics.update(segmentation_metrics(out))
    metrics.update(data.modality_counts(split))
    if task_for(cfg).inputs(cfg).crop != "none":
        metrics["crops_without_lesion"] = data.crops_without_lesion.get(split, 0)
    if grad_cam_folder:
        metrics["grad_cam_written"] = _explain(data, model, cfg, split, grad_cam_folder, out)
    return metrics


def classification_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> Metrics:
    """AUC, proportions at ``threshold``, per-case statistics and the score histograms."""
    metrics: Metrics = dict(binary_metrics(labels, scores, threshold))
    metrics.update(per_case_statistics(labels, scores))
    metrics["hist_pos"], metrics["hist_neg"] = score_histograms(labels, scores)
    return metrics


def segmentation_metrics(out: Prediction) -> Metrics:
    """Mean (and SD) Dice, IoU, precision and recall over the cases with a ground-truth mask."""
    assert out.masks is not None and out.truth is not None and out.has_mask is not None
    keep = torch.from_numpy(out.has_mask)
    if not bool(keep.any()):
        return {"seg_n": 0}
    summary = summarize(segmentation_scores(out.masks[keep], out.truth[keep]))
    return {f"seg_{key}": value for key, value in summary.items()}


def _explain(data: SiteData, model: nn.Module, cfg: RunConfig, split: str, folder: str, out: Prediction) -> int:
    """Write Grad-CAM overlays of a few cases, chosen by their scores in ``out``, to the site's ``output_dir`` (never sent).

    Written to ``<output_dir>/grad_cam/<run-id>/<folder>/``; returns how many.
    """
    explained = task_for(cfg).explained(model)
    cases = data.splits[split]
    if explained is None or out.scores is None or cfg.grad_cam_cases < 1:
        return 0
    target = Path(data.config.output_dir) / "grad_cam" / safe_name(cfg.run_id or "run") / safe_name(folder)
    paths = write_grad_cams(
        explained.cpu(), cases.images, out.scores.tolist(), out.labels.tolist(), [c.case_id for c in cases.cases], target, cfg.grad_cam_cases
    )
    logger.info("site %s: %d Grad-CAM overlay(s) written to %s", data.config.site, len(paths), target)
    return len(paths)


def per_case_statistics(labels: np.ndarray, scores: np.ndarray) -> Metrics:
    """Statistics that need per-case scores, computed here so only their results leave the site.

    Calibration slope and intercept, Hosmer-Lemeshow, and the ROC's bootstrap band on a fixed
    FPR grid (lists whose length never depends on the number of cases).
    """
    from evaluation.calibration import calibration_regression, hosmer_lemeshow  # statsmodels: only where needed
    from evaluation.roc_band import roc_band

    out: Metrics = {}
    if len(set(labels.tolist())) < 2:
        return out
    out.update(calibration_regression(labels, scores))
    out.update(hosmer_lemeshow(labels, scores))
    band = roc_band(labels, scores)
    if band:
        out["roc_tpr_lo"], out["roc_tpr_hi"] = band["tpr_lo"], band["tpr_hi"]
    return out


def compare_models(inputs: Mapping[str, tuple[SiteData, nn.Module, RunConfig]], split: str, reference: str) -> list[Metrics]:
    """Paired comparisons of ``reference`` with every other model on the same cases of one split.

    Each model is given with the site's inputs it reads and its run config; lesion crops may differ
    by the segmenter that cut them, a clip model reads the loops a key-frame model reads the stills
    of. Each pair is compared on the cases both read (by case and manifest row: a single-modality
    model reads only the cases that have its modality). DeLong's test for correlated AUCs,
    category-free NRI and IDI (``reference`` as the new model); computed at the site from
    per-case scores, only the statistics are returned.
    """
    from evaluation.paired import paired_comparisons

    scores: dict[str, dict[tuple[str, int], tuple[int, float]]] = {}  # by model: (case id, manifest row) -> (label, score)
    for name, (data, model, cfg) in inputs.items():
        out = predict(model, data.loader(split, train=False), task_for(cfg), resolve_device(data.config.compute.device))
        if out.scores is not None:
            ids = [(c.case_id, c.row) for c in data.splits[split].cases]
            scores[name] = {case: (int(label), float(score)) for case, label, score in zip(ids, out.labels, out.scores)}
    if reference not in scores:
        return []
    rows = []
    for name, other in scores.items():
        if name == reference:
            continue
        common = [case for case in scores[reference] if case in other]  # a single-modality model reads only the cases that have its modality
        labels = np.array([scores[reference][case][0] for case in common], dtype=np.int64)
        if not np.array_equal(labels, [other[case][0] for case in common]):
            raise ValueError(f"model {name} gives other labels than {reference} for the same cases")
        pair = {reference: np.array([scores[reference][c][1] for c in common]), name: np.array([other[c][1] for c in common])}
        rows += paired_comparisons(labels, pair, reference)
    return rows


def _inputs_named(task: Any, cfg: RunConfig) -> str:
    """The inputs a task reads, in words (a refusal's reason)."""
    spec = task.inputs(cfg)
    if spec.modal is not None:
        return ", ".join(spec.modal.modalities)
    return "clips" if spec.frames else "lesion crops" if spec.crop != "none" else "images"


def site_salt(name: str) -> int:
    """A stable small integer from a site name (Python's hash() is salted per process)."""
    return sum(ord(c) * (i + 1) for i, c in enumerate(name)) % 10_007
