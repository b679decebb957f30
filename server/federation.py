"""The server's job as a plain function: handshake, rounds, final cross-site evaluation."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid

from evaluation.pooling import at_threshold
from evaluation.report import write_report
from models.fusion import SEGMENTER_PREFIX
from models.run_config import FUSION_RULES, RunConfig
from models.task import task_for
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
        _run_stages(grid, cfg, sites, excluded, run_dir, start)
    except TooFewSitesError as err:
        last = run_dir.write_stopped(str(err))
        after = (
            f"checkpoints up to round {last} are kept in {run_dir.path}; continue it with `axilla-server --resume {run_dir.path}`"
            if last >= 0
            else "no round had started, so there is nothing to resume; submit it again once enough sites are connected"
        )
        raise FederationError(f"{err}. The run stopped; {after}") from err
    write_report(run_dir.path)
    logger.info("run directory: %s", run_dir.path)
    return run_dir.path


def _run_stages(
    grid: Grid, cfg: RunConfig, sites: dict[int, NodeSite], excluded: dict[str, str], run_dir: RunDirectory, start: ResumePoint | None
) -> ArrayRecord:
    """Train and evaluate the run's stages in order; return the last stage's final model.

    A single-task run has one stage. The automatic pipeline trains each of ``segmenters``
    (``num-rounds`` each), evaluates them and their fusions everywhere, then trains the
    classifier on lesion crops cut by the fused segmenters, which ride along with every
    classifier message. Rounds are numbered across stages, so a resumed run skips the stages
    whose last round is checkpointed and continues the one it stopped in.
    """
    done = start.completed_rounds if start is not None else 0
    arrays = start.arrays if start is not None else None
    segmenters: dict[str, ArrayRecord] = {}
    for index, (name, stage_cfg) in enumerate(stage_plan(cfg)):
        offset, end = index * cfg.num_rounds, (index + 1) * cfg.num_rounds
        if done >= end:
            final = run_dir.load_checkpoint(f"round-{end:03d}")
        else:
            resumed = arrays if done > offset else None
            crop_with = _attached(segmenters) if stage_cfg.lesion_crop == "predicted" else {}
            final = _train(grid, stage_cfg, sites, excluded, run_dir, offset, done - offset if resumed is not None else 0, resumed, crop_with)
        run_dir.save_checkpoint(name or "final", final)
        if stage_cfg.task == "segmentation" and cfg.pipeline == "automatic":
            segmenters[name] = final
            if len(segmenters) == len(cfg.segmenter_list):
                segmentation_evaluation(grid, cfg, sites, segmenters, run_dir)
        else:
            final_evaluation(grid, stage_cfg, sites, final, run_dir, _attached(segmenters))
    if cfg.pipeline == "automatic":
        run_dir.save_checkpoint("final", final)
    return final


def _attached(segmenters: Mapping[str, ArrayRecord]) -> dict[str, ArrayRecord]:
    """The trained segmenters as the records that ride along with messages (``seg:<name>``)."""
    return {f"{SEGMENTER_PREFIX}{name}": record for name, record in segmenters.items()}


def stage_plan(cfg: RunConfig) -> list[tuple[str, RunConfig]]:
    """The run's stages as (name, stage run config): ``[("", cfg)]`` for a single task."""
    if cfg.pipeline != "automatic":
        return [("", cfg)]
    return [(name, cfg.for_segmenter(name)) for name in cfg.segmenter_list] + [("classifier", cfg.for_classifier())]


def _train(
    grid: Grid,
    cfg: RunConfig,
    sites: dict[int, NodeSite],
    excluded: dict[str, str],
    run_dir: RunDirectory,
    offset: int = 0,
    done: int = 0,
    resumed: ArrayRecord | None = None,
    attachments: Mapping[str, ArrayRecord] | None = None,
) -> ArrayRecord:
    """One stage's training rounds still to run (rounds ``offset`` + 1 ...); returns its final model."""
    n_train = sum(s.trains for s in sites.values())
    if n_train < cfg.min_train_sites:
        raise TooFewSitesError(
            f"{n_train} usable training site(s), fewer than min-train-sites={cfg.min_train_sites}; excluded: {excluded or 'none'}"
        )
    if resumed is None:
        initial = ArrayRecord(task_for(cfg).build_model(cfg).state_dict())
        if offset == 0:
            run_dir.save_checkpoint("round-000", initial)
    else:
        initial = resumed
    if done >= cfg.num_rounds:
        return initial
    strategy = build_strategy(
        cfg.strategy, sites, run_dir, cfg.min_train_sites, cfg.proximal_mu, cfg.max_update_norm_ratio, cfg.round_timeout,
        offset + done, cfg.validate_every, attachments,
    )  # fmt: skip
    result = strategy.start(
        grid=grid,
        initial_arrays=initial,
        num_rounds=cfg.num_rounds - done,
        timeout=cfg.round_timeout,
        train_config=ConfigRecord(training_config(cfg) | {"stage-offset": offset}),
        evaluate_config=ConfigRecord(cfg.to_mapping() | {"split": "val", "stage-offset": offset}),
    )
    return result.arrays if result.arrays is not None else initial


def training_config(cfg: RunConfig) -> dict:
    """The run config forwarded with training messages; ``proximal-mu`` is left to FedProx to add."""
    return {k: v for k, v in cfg.to_mapping().items() if k != "proximal-mu"}


def final_evaluation(
    grid: Grid,
    cfg: RunConfig,
    sites: dict[int, NodeSite],
    arrays: ArrayRecord,
    run_dir: RunDirectory,
    attachments: Mapping[str, ArrayRecord] | None = None,
) -> float | None:
    """Pick the threshold on the training sites' validation aggregates, then evaluate everywhere.

    Validation rows are re-cut at that threshold from the same replies' histograms; test
    splits of every site, external sites included, are evaluated at it, and each site writes
    Grad-CAM overlays of a few test cases to its own ``output_dir``. Returns the threshold
    (None for a task without case probabilities, e.g. segmentation).
    """
    task = task_for(cfg)
    records = {"arrays": arrays, **(attachments or {})}
    train_nodes = [n for n, s in sites.items() if s.trains]
    validation = _evaluate(grid, cfg, {n: sites[n] for n in train_nodes}, records, {"split": "val", "threshold": 0.5})
    threshold = None
    extras: dict[str, Any] = {"split": "test", "threshold": 0.5}
    if task.has_scores:
        threshold = threshold_from_site_metrics(validation.values(), cfg)
        logger.info("operating point (%s on pooled validation histograms): %.4f", cfg.threshold_rule, threshold)
        validation = {name: at_threshold(m, threshold) for name, m in validation.items()}
        extras |= {"threshold": threshold, "grad-cam": "federated"}
    test = _evaluate(grid, cfg, sites, records, extras)
    segmenter = cfg.segmenter if task.needs_masks else ""
    _record_final(run_dir, sites, train_nodes, validation, test, "federated", segmenter)
    return threshold


def segmentation_evaluation(grid: Grid, cfg: RunConfig, sites: dict[int, NodeSite], segmenters: Mapping[str, ArrayRecord], run_dir: RunDirectory) -> None:
    """Evaluate each trained segmenter and each fusion of them on every site's validation and test cases.

    One message per site and split carries all the segmenters; the site answers every candidate's
    metrics, keyed ``<candidate>/<metric>`` (``segmentation_candidates`` names them).
    """
    train_nodes = [n for n, s in sites.items() if s.trains]
    records = _attached(segmenters)
    stage_cfg = cfg.for_segmenter(cfg.segmenter_list[0])
    extras = {"candidates": ",".join(segmentation_candidates(cfg))}
    validation = _evaluate(grid, stage_cfg, {n: sites[n] for n in train_nodes}, records, extras | {"split": "val"})
    test = _evaluate(grid, stage_cfg, sites, records, extras | {"split": "test"})
    for label in segmentation_candidates(cfg):
        val_rows, test_rows = (
            {site: {k.partition("/")[2]: v for k, v in m.items() if k.startswith(f"{label}/")} for site, m in replies.items()}
            for replies in (validation, test)
        )
        _record_final(run_dir, sites, train_nodes, val_rows, test_rows, "federated", label)
        dice = {site: round(float(m["seg-dice"]), 3) for site, m in test_rows.items() if "seg-dice" in m}
        logger.info("segmentation %s: test Dice per site %s", label, dice)


def segmentation_candidates(cfg: RunConfig) -> list[str]:
    """What the automatic pipeline's segmentation evaluation reports: each segmenter, then each fusion."""
    return [*cfg.segmenter_list, *(f"fusion-{rule}" for rule in FUSION_RULES)]


def _record_final(
    run_dir: RunDirectory,
    sites: dict[int, NodeSite],
    train_nodes: list[int],
    validation: Mapping[str, Mapping[str, Any]],
    test: Mapping[str, Mapping[str, Any]],
    model: str,
    segmenter: str,
) -> None:
    """Write the final rows of one model: validation at the training sites, test everywhere."""
    for split, targets, per_site in (("val", train_nodes, validation), ("test", list(sites), test)):
        for node in targets:
            name = sites[node].name
            if name in per_site:
                run_dir.record("final", model, name, split, dict(per_site[name]), segmenter=segmenter)
            else:
                run_dir.record("final", model, name, split, None, "no valid reply", segmenter=segmenter)


def _evaluate(
    grid: Grid, cfg: RunConfig, sites: dict[int, NodeSite], records: Mapping[str, ArrayRecord], extras: Mapping[str, Any]
) -> dict[str, MetricRecord]:
    """Send one evaluation (the ``records``, the run config and ``extras``) to each given node; valid replies by site."""
    config = ConfigRecord(cfg.to_mapping() | {"server-round": cfg.num_rounds} | dict(extras))
    messages = [
        Message(RecordDict({**records, "config": config}), dst_node_id=node, message_type=MessageType.EVALUATE) for node in sites
    ]
    out: dict[str, MetricRecord] = {}
    for reply in grid.send_and_receive(messages, timeout=cfg.round_timeout):
        node = reply.metadata.src_node_id
        if reply.has_error():
            logger.error("site %s failed to evaluate %s: %s", sites[node].name, extras.get("split"), reply.error.reason)
            continue
        out[sites[node].name] = next(iter(reply.content.metric_records.values()))
    return out
