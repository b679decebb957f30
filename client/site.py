"""Plain site functions (no Flower): describe the site, train one round, evaluate a split."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from client.data import SiteData
from client.training import make_optimizer, predict, resolve_device, train_epochs
from client.version import axilla_version
from evaluation.calibration import calibration_regression, hosmer_lemeshow
from evaluation.delong import delong_test
from evaluation.reclassification import idi, nri
from evaluation.roc_band import roc_band
from evaluation.thresholds import score_histograms
from models.run_config import RunConfig
from models.task import get_task

Metrics = dict[str, Any]


def describe_site(data: SiteData) -> dict[str, Any]:
    """The handshake answer: name, role, case counts per split and label, fingerprint, version."""
    out: dict[str, Any] = {
        "site": data.config.site,
        "role": data.config.role,
        "fingerprint": data.fingerprint,
        "version": axilla_version(),
        "share-case-predictions": data.config.privacy.share_case_predictions,
    }
    for split, counts in data.counts().items():
        out[f"n-{split}-pos"] = counts[1]
        out[f"n-{split}-neg"] = counts[0]
    return out


def model_for(cfg: RunConfig, state: dict[str, torch.Tensor]) -> nn.Module:
    """Build the run's network and load a state dict strictly."""
    model = get_task(cfg.task).build_model(cfg)
    model.load_state_dict(state, strict=True)
    return model


def train_round(
    data: SiteData, state: dict[str, torch.Tensor], cfg: RunConfig, server_round: int, proximal_mu: float = 0.0
) -> tuple[dict[str, torch.Tensor], Metrics]:
    """Train the received global model locally for ``cfg.local_epochs`` epochs.

    Returns the updated state dict and scalar metrics; ``num-examples`` counts training cases.
    """
    task = get_task(cfg.task)
    model = model_for(cfg, state)
    seed = cfg.seed * 100_003 + server_round * 1009 + _site_salt(data.config.site)
    torch.manual_seed(seed)
    device = resolve_device(data.config.compute.device)
    stats = train_epochs(
        model,
        data.loader("train", train=True, seed=seed),
        task,
        make_optimizer(model, cfg.optimizer, cfg.round_lr(server_round), cfg.weight_decay),
        cfg.local_epochs,
        device,
        proximal_mu=proximal_mu,
        desc=f"{data.config.site} round {server_round}",
    )
    new_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return new_state, {"num-examples": stats.num_examples, "train-loss": stats.loss, "steps": stats.steps}


def evaluate_split(data: SiteData, model: nn.Module, cfg: RunConfig, split: str, threshold: float = 0.5) -> Metrics:
    """Evaluate a model on one split: loss, AUC with DeLong CI, proportions at ``threshold``.

    Also the per-class score histograms (aggregates, never per-case scores) from which
    the server picks an operating point.
    """
    task = get_task(cfg.task)
    if len(data.splits[split]) == 0:
        return {"num-examples": 0, "n": 0}
    labels, scores, loss = predict(model, data.loader(split, train=False), task, resolve_device(data.config.compute.device))
    metrics: Metrics = {"num-examples": int(len(labels)), "loss": loss}
    metrics.update(task.metrics(labels, scores, threshold))
    metrics.update(per_case_statistics(labels, scores))
    pos, neg = score_histograms(labels, scores)
    metrics["hist-pos"], metrics["hist-neg"] = pos, neg
    return metrics


def per_case_statistics(labels: np.ndarray, scores: np.ndarray) -> Metrics:
    """Statistics that need per-case scores, computed here so only their results leave the site.

    Calibration slope and intercept, Hosmer-Lemeshow, and the ROC's bootstrap band on a fixed
    FPR grid (lists whose length never depends on the number of cases).
    """
    out: Metrics = {}
    if len(set(labels.tolist())) < 2:
        return out
    out.update(calibration_regression(labels, scores))
    out.update(hosmer_lemeshow(labels, scores))
    band = roc_band(labels, scores)
    if band:
        out["roc-tpr-lo"], out["roc-tpr-hi"] = band["tpr_lo"], band["tpr_hi"]
    return out


def compare_models(data: SiteData, models: dict[str, nn.Module], cfg: RunConfig, split: str, reference: str) -> list[Metrics]:
    """Paired comparisons of ``reference`` with every other model on the same cases of one split.

    DeLong's test for correlated AUCs, category-free NRI and IDI (``reference`` as the new
    model); computed at the site from per-case scores, only the statistics are returned.
    """
    device = resolve_device(data.config.compute.device)
    loader = data.loader(split, train=False)
    task = get_task(cfg.task)
    scores = {name: predict(model, loader, task, device)[:2] for name, model in models.items()}
    labels, ref = scores[reference]
    if len(set(labels.tolist())) < 2:
        return []
    out = []
    for name, (_, other) in scores.items():
        if name == reference:
            continue
        row: Metrics = {"model_a": reference, "model_b": name}
        row["delong_z"], row["delong_p"] = delong_test(labels, ref, other)
        row.update(nri(labels, other, ref))
        row.update(idi(labels, other, ref))
        out.append(row)
    return out


def _site_salt(name: str) -> int:
    """A stable small integer from a site name (Python's hash() is salted per process)."""
    return sum(ord(c) * (i + 1) for i, c in enumerate(name)) % 10_007
