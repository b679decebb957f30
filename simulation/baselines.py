"""Baselines of a simulation: each training site alone, and all training data pooled, as federations too.

Each baseline runs the federation's own stage loop (``server.federation.run_plan``) on an
in-process grid of the same sites: ``local:<site>`` is a federation in which only that site trains
(and chooses the operating point on its validation split); ``pooled`` adds one node holding the
training sites' pooled data, which trains, while the training sites' validation splits choose the
operating point. Every baseline is evaluated at every site like the federated model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from flwr.app import ArrayRecord

from client.errors import SiteDataError
from client.node_site import POOLED_SITES, SITE_CONFIG
from client.site import compare_models, model_for, stage_data
from client.site_config import load_site_config
from client.work import crop_digest
from models.run_config import RunConfig
from models.stages import Plan, plan_for
from models.task import task_for
from protocol.messages import wire_model
from server.federation import run_plan
from server.dp_variant import resolve_variant
from server.handshake import handshake, with_roles
from server.inprocess_grid import InProcessGrid
from server.run_dir import FEDERATED, RunDirectory
from strategies.sites import NodeSite, TooFewSitesError

logger = logging.getLogger("axilla.simulation")


def baseline_plan(cfg: RunConfig) -> Plan:
    """The federation's plan with one training site enough and no per-round validation (as the baselines always had)."""
    return plan_for(cfg.replace(min_train_sites=1, validate_every=0))


def run_baselines(run_dir: RunDirectory, cfg: RunConfig, site_configs: Sequence[Path]) -> None:
    """Train and evaluate ``local:<site>`` for every training site and ``pooled`` on all of them.

    Then every site compares the federated model with each baseline on its own test cases
    (each model on its own inputs: in the automatic pipeline, crops by its own segmenters). A
    baseline whose site cannot train (a DP budget too small for the schedule, unreadable data)
    stops like a federation with too few sites: its rounds are recorded missing with the site's
    reason, it has no final model, and the other baselines go on. The pooled baseline pools the
    training sites whose local baseline trained.
    """
    grid = InProcessGrid({SITE_CONFIG: str(Path(p).resolve())} for p in site_configs)
    sites, excluded = handshake(grid, grid.get_node_ids(), cfg, cfg.round_timeout)
    for node, reason in excluded.items():
        logger.error("baselines skip %s: %s", node, reason)
    cfg, _ = resolve_variant(cfg, sites)  # as the federated model's: the same networks, compared at every site
    plan = baseline_plan(cfg)
    training = [n for n, s in sites.items() if s.trains]
    finals: dict[str, dict[str, ArrayRecord]] = {}
    for node in training:
        name = f"local:{sites[node].name}"
        roles = {n: "train" if n == node else "external" for n in sites}
        _run_baseline(finals, name, grid, plan, with_roles(sites, roles), run_dir)
    members = [n for n in training if f"local:{sites[n].name}" in finals]  # a site that cannot train alone adds nothing to the pool
    for node in set(training) - set(members):
        logger.error("the pooled baseline leaves out %s, which could not train (see local:%s)", sites[node].name, sites[node].name)
    if members:
        pooled_node = grid.add_node({POOLED_SITES: os.pathsep.join(str(grid.contexts[n].node_config[SITE_CONFIG]) for n in members)})
        pooled, _ = handshake(grid, [pooled_node], cfg, cfg.round_timeout)
        roles = {n: "validate" if n in members else "external" for n in sites} | {pooled_node: "pooled"}
        _run_baseline(finals, "pooled", grid, plan, with_roles({**sites, **pooled}, roles), run_dir)
    finals[FEDERATED] = {stage.name: run_dir.load_checkpoint(stage.checkpoint) for stage in plan.bases}
    compare_at_sites(run_dir, plan, {n: sites[n] for n in sites}, grid, finals)


def _run_baseline(
    finals: dict[str, dict[str, ArrayRecord]], name: str, grid: InProcessGrid, plan: Plan, sites: Mapping[int, NodeSite], run_dir: RunDirectory
) -> None:
    """Run one baseline's federation into ``finals``; one that stops for too few usable sites is logged and left out."""
    try:
        finals[name] = run_plan(grid, plan, dict(sites), run_dir.for_model(name))
    except TooFewSitesError as err:
        logger.error("baseline %s stopped, so it has no final model: %s", name, err)


def compare_at_sites(
    run_dir: RunDirectory, plan: Plan, sites: Mapping[int, NodeSite], grid: InProcessGrid, finals: Mapping[str, Mapping[str, ArrayRecord]]
) -> None:
    """Paired comparisons (DeLong, NRI, IDI) of the federated model with every baseline on each site's test cases."""
    last = plan.last
    if not task_for(last.cfg).has_scores:
        return
    for node, site in sites.items():
        config = load_site_config(Path(str(grid.contexts[node].node_config[SITE_CONFIG])))
        inputs = {}
        try:
            for name, models in finals.items():
                segmenters = {s: models[s] for s in last.crop_with}
                refs = tuple((s, wire_model(r)[0]) for s, r in segmenters.items())
                states = {s: r.to_torch_state_dict() for s, r in segmenters.items()}
                inputs[name] = (stage_data(config, last.cfg, states, crop_digest(refs)), model_for(last.cfg, models[last.name].to_torch_state_dict()), last.cfg)
        except SiteDataError as err:  # a site whose data cannot be read has no comparisons; the others still do
            logger.error("no model comparisons at site %s: %s", site.name, err)
            continue
        for row in compare_models(inputs, "test", reference=FEDERATED):
            rows = {side: run_dir.for_model(row[side]).for_row(last.row).rows for side in ("model_a", "model_b")}
            run_dir.record_comparison(site.name, "test", row | rows)
