"""Baselines of a simulation: each training site alone, and all training data pooled."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch

from client.data import SiteData, pool_site_data
from client.site import compare_models, evaluate_split, model_for, train_round
from evaluation.pooling import at_threshold
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
    validation = {s.config.site: evaluate_split(s, model, cfg, "val") for s in val_sites}
    threshold = threshold_from_site_metrics(validation.values(), cfg)
    for site, metrics in validation.items():
        run_dir.record("final", name, site, "val", at_threshold(metrics, threshold))
    for site in sites:
        run_dir.record("final", name, site.config.site, "test", evaluate_split(site, model, cfg, "test", threshold))
    return threshold


def run_baselines(run_dir: RunDirectory, cfg: RunConfig, sites: list[SiteData]) -> None:
    """Train and evaluate ``local:<site>`` for every training site and ``pooled`` on all of them.

    Then every site compares the federated model with each baseline on its own test cases.
    """
    training = [s for s in sites if s.config.trains]
    states: dict[str, dict[str, torch.Tensor]] = {}
    for site in training:
        name = f"local:{site.config.site}"
        states[name] = train_like_federation(site, cfg)
        run_dir.save_checkpoint(f"local-{site.config.site}", states[name])
        evaluate_everywhere(name, states[name], cfg, [site], sites, run_dir)
    states["pooled"] = train_like_federation(pool_site_data(training), cfg)
    run_dir.save_checkpoint("pooled", states["pooled"])
    evaluate_everywhere("pooled", states["pooled"], cfg, training, sites, run_dir)
    final = run_dir.path / "checkpoints" / "final.pt"
    states["federated"] = torch.load(final, map_location="cpu", weights_only=True)
    models = {name: model_for(cfg, state) for name, state in states.items()}
    for site in sites:
        for row in compare_models(site, models, cfg, "test", reference="federated"):
            run_dir.record_comparison(site.config.site, "test", row)
