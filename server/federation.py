"""The server's job as a plain function: handshake, rounds, final cross-site evaluation."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid

from evaluation.pooling import at_threshold
from evaluation.report import write_report
from models.run_config import RunConfig
from models.task import get_task
from server.handshake import handshake
from server.operating_point import threshold_from_site_metrics
from server.resume import ResumeError, ResumePoint, resume_point
from server.run_dir import RunDirectory, new_run_id
from strategies.site_aware import build_strategy
from strategies.sites import NodeSite, TooFewSitesError, wait_for_nodes

logger = logging.getLogger("axilla.server")


class FederationError(RuntimeError):
    """The federation cannot run (too few usable training sites)."""


def run_federation(grid: Grid, cfg: RunConfig) -> Path:
    """Run one experiment end to end (or resume one, with ``resume-from``) and return its run directory.

    If too few training sites are connected or usable, the run stops with ``FederationError``,
    keeping its checkpoints and writing ``stopped.json``; ``resume-from`` continues it later.
    """
    start = None
    if cfg.resume_from:
        run_dir = RunDirectory(Path(cfg.resume_from))
        try:
            start = resume_point(run_dir, cfg)
        except ResumeError as err:
            raise FederationError(str(err)) from err
        cfg = start.cfg
    else:
        cfg = cfg if cfg.run_id else cfg.replace(run_id=new_run_id())
        run_dir = RunDirectory(Path(cfg.runs_dir) / cfg.run_id)
    nodes = wait_for_nodes(grid, max(cfg.expected_sites, cfg.min_train_sites), cfg.round_timeout)
    sites, excluded = handshake(grid, nodes, cfg.to_mapping(), cfg.round_timeout)
    if start is None:
        run_dir.write_config(cfg.to_mapping(), list(sites.values()), excluded)
    else:
        run_dir.note_resume(start.completed_rounds, list(sites.values()), excluded)
    try:
        final = _train(grid, cfg, sites, excluded, run_dir, start)
    except TooFewSitesError as err:
        last = run_dir.write_stopped(str(err))
        after = (
            f"checkpoints up to round {last} are kept in {run_dir.path}; continue it with `axilla-server --resume {run_dir.path}`"
            if last >= 0
            else "no round had started, so there is nothing to resume; submit it again once enough sites are connected"
        )
        raise FederationError(f"{err}. The run stopped; {after}") from err
    run_dir.save_checkpoint("final", final)
    final_evaluation(grid, cfg, sites, final, run_dir)
    write_report(run_dir.path)
    logger.info("run directory: %s", run_dir.path)
    return run_dir.path


def _train(
    grid: Grid, cfg: RunConfig, sites: dict[int, NodeSite], excluded: dict[str, str], run_dir: RunDirectory, start: ResumePoint | None
) -> ArrayRecord:
    """The training rounds still to run; returns the final global model."""
    n_train = sum(s.trains for s in sites.values())
    if n_train < cfg.min_train_sites:
        raise TooFewSitesError(
            f"{n_train} usable training site(s), fewer than min-train-sites={cfg.min_train_sites}; excluded: {excluded or 'none'}"
        )
    if start is None:
        torch.manual_seed(cfg.seed)
        initial = ArrayRecord(get_task(cfg.task).build_model(cfg).state_dict())
        run_dir.save_checkpoint("round-000", initial)
        done = 0
    else:
        initial, done = start.arrays, start.completed_rounds
    if done >= cfg.num_rounds:
        return initial
    strategy = build_strategy(
        cfg.strategy, sites, run_dir, cfg.min_train_sites, cfg.proximal_mu, cfg.max_update_norm_ratio, cfg.round_timeout, done,
        cfg.validate_every,
    )  # fmt: skip
    result = strategy.start(
        grid=grid,
        initial_arrays=initial,
        num_rounds=cfg.num_rounds - done,
        timeout=cfg.round_timeout,
        train_config=ConfigRecord(training_config(cfg)),
        evaluate_config=ConfigRecord(cfg.to_mapping() | {"split": "val"}),
    )
    return result.arrays if result.arrays is not None else initial


def training_config(cfg: RunConfig) -> dict:
    """The run config forwarded with training messages; ``proximal-mu`` is left to FedProx to add."""
    return {k: v for k, v in cfg.to_mapping().items() if k != "proximal-mu"}


def final_evaluation(grid: Grid, cfg: RunConfig, sites: dict[int, NodeSite], arrays: ArrayRecord, run_dir: RunDirectory) -> float:
    """Pick the threshold on the training sites' validation aggregates, then evaluate everywhere.

    Validation rows are re-cut at that threshold from the same replies' histograms; test
    splits of every site, external sites included, are evaluated at it. Returns the threshold.
    """
    train_nodes = [n for n, s in sites.items() if s.trains]
    validation = _evaluate(grid, cfg, {n: sites[n] for n in train_nodes}, arrays, "val", 0.5)
    threshold = threshold_from_site_metrics(validation.values(), cfg)
    logger.info("operating point (%s on pooled validation histograms): %.4f", cfg.threshold_rule, threshold)
    validation = {name: at_threshold(m, threshold) for name, m in validation.items()}
    test = _evaluate(grid, cfg, sites, arrays, "test", threshold)
    for split, targets, per_site in (("val", train_nodes, validation), ("test", list(sites), test)):
        for node in targets:
            name = sites[node].name
            if name in per_site:
                run_dir.record("final", "federated", name, split, dict(per_site[name]))
            else:
                run_dir.record("final", "federated", name, split, None, "no valid reply")
    return threshold


def _evaluate(
    grid: Grid, cfg: RunConfig, sites: dict[int, NodeSite], arrays: ArrayRecord, split: str, threshold: float
) -> dict[str, MetricRecord]:
    """Send one evaluation to each given node; return valid replies by site name."""
    config = ConfigRecord(cfg.to_mapping() | {"split": split, "threshold": threshold, "server-round": cfg.num_rounds})
    messages = [
        Message(RecordDict({"arrays": arrays, "config": config}), dst_node_id=node, message_type=MessageType.EVALUATE)
        for node in sites
    ]
    out: dict[str, MetricRecord] = {}
    for reply in grid.send_and_receive(messages, timeout=cfg.round_timeout):
        node = reply.metadata.src_node_id
        if reply.has_error():
            logger.error("site %s failed to evaluate %s: %s", sites[node].name, split, reply.error.reason)
            continue
        out[sites[node].name] = next(iter(reply.content.metric_records.values()))
    return out
