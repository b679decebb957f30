"""Baselines of a simulation: each training site alone, and all training data pooled.

Each baseline runs the same stages as the federation (the automatic pipeline: every segmenter,
then the classifier on crops cut by that baseline's own fused segmenters) with the same
schedule, and is evaluated at every site like the federated model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from client.data import SiteData, pool_site_data
from client.site import State, compare_models, evaluate_split, model_for, segmentation_candidate, stage_data, train_round
from client.site_config import SiteConfig
from evaluation.pooling import at_threshold
from models.run_config import RunConfig
from models.task import task_for
from server.federation import segmentation_candidates, stage_plan
from server.operating_point import threshold_from_site_metrics
from server.run_dir import RunDirectory

logger = logging.getLogger("axilla.simulation")


def train_like_federation(data: SiteData, cfg: RunConfig) -> dict[str, torch.Tensor]:
    """Train from the same initial model with the same schedule as a federated site: rounds x local epochs."""
    state = task_for(cfg).build_model(cfg).state_dict()
    for server_round in range(1, cfg.num_rounds + 1):
        state, metrics = train_round(data, state, cfg, server_round)
        logger.info("%s %s round %d: train loss %.4f", data.config.site, cfg.task, server_round, metrics["train-loss"])
    return state


def evaluate_everywhere(
    name: str,
    model: nn.Module,
    cfg: RunConfig,
    val_sites: Sequence[SiteConfig],
    sites: Sequence[SiteConfig],
    run_dir: RunDirectory,
    segmenters: Mapping[str, State] | None = None,
    segmenter: str = "",
) -> float | None:
    """Choose the threshold on ``val_sites``' validation histograms (tasks with scores), then record val and test rows."""
    validation = {c.site: evaluate_split(stage_data(c, cfg, segmenters), model, cfg, "val") for c in val_sites}
    threshold = None
    if task_for(cfg).has_scores:
        threshold = threshold_from_site_metrics(validation.values(), cfg)
        validation = {site: at_threshold(m, threshold) for site, m in validation.items()}
    for site, metrics in validation.items():
        run_dir.record("final", name, site, "val", metrics, segmenter=segmenter)
    for config in sites:
        metrics = evaluate_split(stage_data(config, cfg, segmenters), model, cfg, "test", 0.5 if threshold is None else threshold)
        run_dir.record("final", name, config.site, "test", metrics, segmenter=segmenter)
    return threshold


def run_baseline(name: str, members: Sequence[SiteConfig], cfg: RunConfig, sites: Sequence[SiteConfig], run_dir: RunDirectory) -> tuple[RunConfig, nn.Module, dict[str, State]]:
    """Train one baseline on ``members``' data through every stage and evaluate it everywhere.

    Returns the last stage's config, model and the segmenters it cropped with (if any).
    """
    segmenters: dict[str, State] = {}
    task = task_for(cfg)
    for stage, stage_cfg in stage_plan(cfg):
        crop_with = segmenters if stage_cfg.lesion_crop == "predicted" else None
        parts = [stage_data(c, stage_cfg, crop_with) for c in members]
        data = parts[0] if len(parts) == 1 else pool_site_data(parts, name)
        state = train_like_federation(data, stage_cfg)
        run_dir.save_checkpoint(f"{name.replace(':', '-')}{'-' + stage if stage else ''}", state)
        model = model_for(stage_cfg, state)
        if stage_cfg.task == "segmentation" and cfg.pipeline == "automatic":
            segmenters[stage] = state
            evaluate_everywhere(name, model, stage_cfg, members, sites, run_dir, segmenter=stage)
            if len(segmenters) == len(cfg.segmenter_list):
                for label in segmentation_candidates(cfg)[len(segmenters):]:
                    fused = segmentation_candidate(cfg, segmenters, label)
                    evaluate_everywhere(name, fused, stage_cfg, members, sites, run_dir, segmenter=label)
        else:
            evaluate_everywhere(name, model, stage_cfg, members, sites, run_dir, crop_with, cfg.segmenter if task.needs_masks else "")
    return stage_cfg, model, segmenters  # the last stage's (stage_plan is never empty)


def run_baselines(run_dir: RunDirectory, cfg: RunConfig, sites: list[SiteConfig]) -> None:
    """Train and evaluate ``local:<site>`` for every training site and ``pooled`` on all of them.

    Then every site compares the federated model with each baseline on its own test cases
    (each model on its own inputs: in the automatic pipeline, crops by its own segmenters).
    """
    training = [c for c in sites if c.trains]
    finals: dict[str, tuple[RunConfig, nn.Module, dict[str, State]]] = {}
    for name, members in [(f"local:{c.site}", [c]) for c in training] + [("pooled", training)]:
        finals[name] = run_baseline(name, members, cfg, sites, run_dir)
    last_cfg = finals["pooled"][0]
    if not task_for(last_cfg).has_scores:
        return
    federated = model_for(last_cfg, torch.load(run_dir.path / "checkpoints" / "final.pt", map_location="cpu", weights_only=True))
    fed_segmenters = {
        name: torch.load(run_dir.path / "checkpoints" / f"{name}.pt", map_location="cpu", weights_only=True)
        for name in (cfg.segmenter_list if last_cfg.lesion_crop == "predicted" else ())
    }
    finals["federated"] = (last_cfg, federated, fed_segmenters)
    for config in sites:
        inputs = {name: (stage_data(config, c, segs or None), model) for name, (c, model, segs) in finals.items()}
        for row in compare_models(inputs, last_cfg, "test", reference="federated"):
            run_dir.record_comparison(config.site, "test", row)
