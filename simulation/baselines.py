"""Baselines of a simulation: each training site alone, and all training data pooled."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch

from client.data import SiteData, pool_site_data
from client.site import evaluate_split, model_for, train_round
from models.run_config import RunConfig
from models.task import get_task
from server.operating_point import threshold_from_site_metrics
from server.run_dir import RunDirectory

logger = logging.getLogger("axilla.simulation")


def train_like_federation(data: SiteData, cfg: RunConfig) -> dict[str, torch.Tensor]:
    """Train from the same initial model with the same schedule as a federated site: rounds x local epochs."""
    torch.manual_seed(cfg.seed)
    state = get_task(cfg.task).build_model(cfg).state_dict()
    for server_round in range(1, cfg.num_rounds + 1):
        state, metrics = train_round(data, state, cfg, server_round)
        logger.info("%s round %d: train loss %.4f", data.config.site, server_round, metrics["train-loss"])
    return state


def evaluate_everywhere(
    name: str, state: dict[str, torch.Tensor], cfg: RunConfig, val_sites: Iterable[SiteData], sites: list[SiteData], run_dir: RunDirectory
) -> float:
    """Choose the threshold on ``val_sites``' validation histograms, then record val and test rows."""
    model = model_for(cfg, state)
    val_sites = list(val_sites)
    threshold = threshold_from_site_metrics([evaluate_split(s, model, cfg, "val") for s in val_sites], cfg)
    for site in val_sites:
        run_dir.record("final", name, site.config.site, "val", evaluate_split(site, model, cfg, "val", threshold))
    for site in sites:
        run_dir.record("final", name, site.config.site, "test", evaluate_split(site, model, cfg, "test", threshold))
    return threshold


def run_baselines(run_dir: RunDirectory, cfg: RunConfig, sites: list[SiteData]) -> None:
    """Train and evaluate ``local:<site>`` for every training site and ``pooled`` on all of them."""
    training = [s for s in sites if s.config.trains]
    for site in training:
        name = f"local:{site.config.site}"
        state = train_like_federation(site, cfg)
        run_dir.save_checkpoint(f"local-{site.config.site}", state)
        evaluate_everywhere(name, state, cfg, [site], sites, run_dir)
    pooled = pool_site_data(training)
    state = train_like_federation(pooled, cfg)
    run_dir.save_checkpoint("pooled", state)
    evaluate_everywhere("pooled", state, cfg, training, sites, run_dir)
