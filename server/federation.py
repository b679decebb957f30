"""The server's job as a plain function: handshake, then the run's stage plan (rounds, final cross-site evaluation).

``run_plan`` is the only stage loop: the federated model runs it on the deployment's (or Flower
simulation's) grid, and each simulation baseline runs it on an in-process grid with its own roles.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict

from evaluation.pooling import MIDPOINT_FLAG, at_threshold, pooled_metrics
from evaluation.report import write_report
from models.run_config import RunConfig
from models.stages import Plan, Stage, plan_for
from models.task import build_network, task_for
from protocol.messages import EVALUATE, RUN, Evaluate, EvaluateReply, ProtocolError, Train, comparison_prefix, model_record_name, wire_model
from protocol.metrics import COMPARISON_METRICS, candidate_metric, split_candidate_metric
from server.dp_variant import VariantError, resolve_variant
from server.enrolment import EnrolmentError
from server.handshake import handshake
from server.operating_point import midpoint_used, threshold_from_site_metrics
from server.personalisation import personalised, record_personalisation
from server.resume import ResumeError, ResumePoint, resume_point
from server.run_dir import RunDirectory, new_run_id
from strategies.central_dp import CentralDP, CentralDPError
from strategies.named import ServerStateError, StrategySettings, restore_server_state
from strategies.site_aware import build_strategy
from strategies.sites import NodeSite, TooFewSitesError, wait_for_nodes

logger = logging.getLogger("axilla.server")

Grid = Any  # Flower's Grid, or anything with its get_node_ids and send_and_receive (server/inprocess_grid.py)


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
    try:
        sites, excluded = handshake(grid, nodes, cfg, cfg.round_timeout)
        cfg, why = resolve_variant(cfg, sites)
    except (EnrolmentError, VariantError) as err:
        raise FederationError(str(err)) from err
    plan = plan_for(cfg)
    if start is None and cfg.clinical != "off":
        from server.clinical_schema import ClinicalError  # the clinical modules import this one: late
        from server.clinical_stage import clinical_preflight

        try:
            clinical_preflight(grid, sites, cfg)
        except ClinicalError as err:
            raise FederationError(f"clinical models: {err}; nothing was trained") from err
    if start is None:
        run_dir.write_config(cfg.to_mapping(), list(sites.values()), excluded, describe_run(plan) | {"model_variant": cfg.model_variant, "model_variant_why": why})
    else:
        run_dir.note_resume(start.completed_rounds, list(sites.values()), excluded)
    try:
        run_plan(grid, plan, sites, run_dir, excluded, start, explain=True, clinical=True)
    except (CentralDPError, ServerStateError) as err:
        raise FederationError(str(err)) from err
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


def describe_run(plan: Plan) -> dict[str, Any]:
    """The settings the report shows for the run: the final stage's task's, then the plan's."""
    last = plan.last.cfg
    return task_for(last).describe(last) | plan.describe()


@dataclass
class Courier:
    """What each node holds of the run's models, so that each is sent once per node and referred to by digest."""

    held: dict[int, set[str]] = field(default_factory=dict)

    def delivery(self, run: RunConfig, models: Mapping[str, ArrayRecord]) -> Delivery:
        """The records of one stage's messages: its run config and the named models (by name -> digest)."""
        wired = {name: wire_model(record) for name, record in models.items()}
        return Delivery(self, run, tuple((name, digest) for name, (digest, _) in wired.items()), dict(wired.values()))


@dataclass
class Delivery:
    """One stage's extra records, per node (the strategies' ``Extras``)."""

    courier: Courier
    run: RunConfig
    refs: tuple[tuple[str, str], ...]  # (name, digest) of the models the stage's messages refer to
    models: dict[str, ArrayRecord]  # by digest

    def records_for(self, node: int) -> dict[str, Any]:
        """The run config, and the referred models ``node`` does not hold yet."""
        held = self.courier.held.setdefault(node, set())
        out: dict[str, Any] = {RUN: ConfigRecord(self.run.to_mapping())}
        for digest, record in self.models.items():
            if digest not in held:
                out[model_record_name(digest)] = record
                held.add(digest)
        return out

    def settled(self, node: int, ok: bool) -> None:
        """Forget what a node that did not answer may not have stored (it is sent again next time)."""
        if not ok:
            self.courier.held.get(node, set()).difference_update(self.models)


def run_plan(
    grid: Grid,
    plan: Plan,
    sites: dict[int, NodeSite],
    run_dir: RunDirectory,
    excluded: Mapping[str, str] | None = None,
    start: ResumePoint | None = None,
    explain: bool = False,
    clinical: bool = False,
) -> dict[str, ArrayRecord]:
    """Train and evaluate the plan's stages in order; return each stage's final model by stage name.

    Rounds are numbered across stages, so a resumed run (``start``) skips the stages whose last
    round is checkpointed and continues the one it stopped in. ``explain`` writes Grad-CAM
    overlays at the sites during the final test evaluation; ``clinical`` then fits the run's clinical
    models on the final model's signature (``server/clinical_stage.py``; the federated model only).
    Under cross-validation every fold's copies of the stages train in turn, each validated on its
    fold, and each model evaluated alone is then evaluated and tested from its best fold only.
    """
    done = start.completed_rounds if start is not None else 0
    courier = Courier()
    trained: dict[int, dict[str, ArrayRecord]] = {}  # each fold's models by stage name (fold 0: no cross-validation)
    folds: dict[str, dict[int, dict[str, Any]]] = {}  # cross-validation: each base stage's validation per fold
    for stage in plan.stages:
        models = trained.setdefault(stage.fold, {})
        if done >= stage.end:
            final = run_dir.load_checkpoint(f"round-{stage.end:03d}")
        else:
            resumed = start.arrays if start is not None and done > stage.offset else None
            stage_dir = run_dir.for_row(stage.row)
            earlier = {name: (plan.stage(name).cfg, models[name]) for name in stage.init_from}
            final = _train(
                grid, stage, sites, dict(excluded or {}), stage_dir, courier, models, plan.total_rounds, done - stage.offset if resumed else 0, resumed, earlier,
                personalised(plan, stage, stage_dir),
            )  # fmt: skip
        run_dir.save_checkpoint(run_dir.stage_checkpoint(stage.checkpoint), final)
        models[stage.name] = final
        if not stage.fold:
            _evaluate_stage(grid, plan, stage, sites, models, run_dir, courier, explain)
        elif plan.stage(stage.name).evaluate_alone:
            folds.setdefault(stage.name, {})[stage.fold] = fold_validation(grid, stage, sites, final, run_dir.for_row(stage.row), courier, models)
    models = trained.get(0, {}) if not plan.folds else _select_folds(grid, plan, sites, trained, folds, run_dir, courier, explain)
    if len(plan.stages) > 1:
        run_dir.save_checkpoint(run_dir.stage_checkpoint("final"), models[plan.last.name])
    if clinical:
        from server.clinical_stage import clinical_stage  # imports server.federation: late

        clinical_stage(grid, plan, sites, run_dir, courier, models)
    return models


def _evaluate_stage(
    grid: Grid, plan: Plan, stage: Stage, sites: dict[int, NodeSite], models: Mapping[str, ArrayRecord], run_dir: RunDirectory, courier: Courier, explain: bool
) -> None:
    """A trained stage's evaluations: its segmentation candidates, and its model alone (compared with the stages it names)."""
    if stage.candidates:
        segmentation_evaluation(grid, stage, sites, models, run_dir, courier)
    if stage.evaluate_alone:
        compared = {name: run_dir.for_row(plan.stage(name).row).rows for name in stage.compare_with}
        stage_dir = run_dir.for_row(stage.row)
        final_evaluation(grid, stage, sites, models[stage.name], stage_dir, courier, models, explain, compared, personalised(plan, stage, stage_dir))


def _select_folds(
    grid: Grid,
    plan: Plan,
    sites: dict[int, NodeSite],
    trained: Mapping[int, Mapping[str, ArrayRecord]],
    folds: Mapping[str, Mapping[int, dict[str, Any]]],
    run_dir: RunDirectory,
    courier: Courier,
    explain: bool,
) -> dict[str, ArrayRecord]:
    """Cross-validation's end: each base stage evaluated alone takes its best fold, which alone is evaluated and tested.

    The best fold has the highest pooled validation AUC (ties: the earlier fold). The stages that cut
    its inputs come from the same fold (and their segmentation candidates are evaluated with it);
    its comparisons use the other stages' chosen models. Returns the chosen models by stage name
    (saved as the stages' checkpoints) and writes ``cv.json``.
    """
    chosen: dict[str, ArrayRecord] = {}
    summary = []
    for base in plan.bases:
        if not base.evaluate_alone:
            continue
        per_fold = folds[base.name]
        fold = max(per_fold, key=lambda k: (per_fold[k].get("auc", float("-inf")), -k))
        for name in (*base.crop_with, base.name):
            chosen[name] = trained[fold][name]
            run_dir.save_checkpoint(run_dir.stage_checkpoint(plan.stage(name).checkpoint), chosen[name])
        for name in base.crop_with:
            dependency = plan.stage(name)
            if dependency.candidates:
                _evaluate_stage(grid, plan, replace(plan.fold_stage(name, fold), candidates=dependency.candidates), sites, chosen, run_dir, courier, explain)
        stage = replace(plan.fold_stage(base.name, fold), evaluate_alone=True, compare_with=base.compare_with)
        _evaluate_stage(grid, plan, stage, sites, chosen, run_dir, courier, explain)
        summary.append({"model": run_dir.for_row(base.row).rows, "chosen_fold": fold, "folds": [per_fold[k] | {"fold": k} for k in sorted(per_fold)]})
    run_dir.write_cross_validation(plan.folds, summary)
    return chosen


def fold_validation(
    grid: Grid, stage: Stage, sites: dict[int, NodeSite], arrays: ArrayRecord, run_dir: RunDirectory, courier: Courier, models: Mapping[str, ArrayRecord]
) -> dict[str, Any]:
    """Evaluate a cross-validation fold's model on the fold's validation cases at every validating site.

    Each site's row is recorded (round ``cv-fold-<k>``); returns the fold's pooled validation
    metrics (from the sites' aggregates: AUC with CI, and the proportions at 0.5) and each site's AUC.
    """
    delivery = courier.delivery(stage.cfg, {name: models[name] for name in stage.crop_with})
    request = Evaluate(run=stage.cfg, server_round=stage.end, stage_offset=stage.offset, segmenters=delivery.refs, split="val", model=run_dir.model)
    validators = {n: s for n, s in sites.items() if s.validates}
    failures: dict[str, str] = {}
    replies = _evaluate(grid, request, validators, arrays, delivery, failures)
    for site in validators.values():
        run_dir.record(f"cv-fold-{stage.fold}", run_dir.rows, site.name, "val", replies.get(site.name), failures.get(site.name, "no valid reply"))
    usable = [m for m in replies.values() if "hist_pos" in m]
    pooled = pooled_metrics(usable) if usable else {}
    keep = ("n", "n_positive", "auc", "auc_ci", "accuracy", "sensitivity", "specificity")
    out = {k: pooled[k] for k in keep if k in pooled} | {"sites": {name: m.get("auc") for name, m in replies.items()}, "missing": failures}
    logger.info("%s fold %d: pooled validation AUC %s", run_dir.rows, stage.fold, out.get("auc"))
    return out


def _train(
    grid: Grid,
    stage: Stage,
    sites: dict[int, NodeSite],
    excluded: dict[str, str],
    run_dir: RunDirectory,
    courier: Courier,
    models: Mapping[str, ArrayRecord],
    total_rounds: int,
    done: int = 0,
    resumed: ArrayRecord | None = None,
    earlier: Mapping[str, tuple[RunConfig, ArrayRecord]] | None = None,
    personal: bool = False,
) -> ArrayRecord:
    """One stage's training rounds still to run (rounds ``stage.offset + done + 1`` ...); returns its final model.

    ``total_rounds`` (over every stage of the run) is what a DP site's privacy budget must cover;
    ``earlier`` (stage name -> its run config and final model) are the models the stage starts from;
    ``personal`` asks the sites to update their personal models too (``personalise = ditto``).
    """
    cfg = stage.cfg
    n_train = sum(s.trains for s in sites.values())
    if n_train < cfg.min_train_sites:
        raise TooFewSitesError(
            f"{n_train} usable training site(s), fewer than min-train-sites={cfg.min_train_sites}; excluded: {excluded or 'none'}"
        )
    if resumed is None:
        from server.standardisation import standardise  # imports this module: late

        network = initial_network(cfg, earlier or {})
        standardise(grid, stage, sites, network, run_dir, courier, models)
        initial = ArrayRecord(network.state_dict())
        if stage.offset == 0:
            run_dir.save_round(0, initial)
    else:
        initial = resumed
    if done >= cfg.num_rounds:
        return initial
    central = CentralDP.of(cfg, n_train)
    if central is not None:
        central.check_schedule(total_rounds)  # before any round: a schedule past central-dp-max-epsilon is refused
    delivery = courier.delivery(cfg, {name: models[name] for name in stage.crop_with})
    strategy = build_strategy(
        cfg.strategy, sites, run_dir, cfg.min_train_sites, cfg.proximal_mu, cfg.max_update_norm_ratio, cfg.round_timeout,
        stage.offset + done, cfg.validate_every, delivery, central, StrategySettings.of(cfg), run=cfg,
    )  # fmt: skip
    if resumed is not None:
        restore_server_state(strategy, run_dir, stage.offset + done)
    result = strategy.start(
        grid=grid,
        initial_arrays=initial,
        num_rounds=cfg.num_rounds - done,
        timeout=cfg.round_timeout,
        train_config=Train(run=cfg, stage_offset=stage.offset, segmenters=delivery.refs, total_rounds=total_rounds, model=run_dir.model,
                           personal=personal and cfg.personalise == "ditto").config(),
        evaluate_config=Evaluate(run=cfg, stage_offset=stage.offset, segmenters=delivery.refs, split="val", model=run_dir.model).config(),
    )
    return result.arrays if result.arrays is not None else initial


def initial_network(cfg: RunConfig, earlier: Mapping[str, tuple[RunConfig, ArrayRecord]]) -> Any:
    """A stage's initial network: freshly built, then started from the earlier stages' models its task takes over."""
    network = build_network(cfg, pretrained=True)
    if earlier:
        sources = {}
        for name, (source_cfg, arrays) in earlier.items():
            sources[name] = build_network(source_cfg)
            sources[name].load_state_dict(arrays.to_torch_state_dict(), strict=True)
        task_for(cfg).initialise(network, sources)
    return network


def final_evaluation(
    grid: Grid,
    stage: Stage,
    sites: dict[int, NodeSite],
    arrays: ArrayRecord,
    run_dir: RunDirectory,
    courier: Courier | None = None,
    models: Mapping[str, ArrayRecord] | None = None,
    explain: bool = False,
    compared: Mapping[str, str] | None = None,
    personalise: bool = False,
) -> float | None:
    """Pick the threshold on the validation sites' aggregates, then evaluate at every testing site.

    Validation rows are re-cut at that threshold from the same replies' histograms; test splits
    of every site, external sites included, are evaluated at it (and, with ``explain``, each
    site writes Grad-CAM overlays of a few test cases to its own ``output_dir``). ``compared``
    (stage name -> its rows' model name) are the earlier stages' models each test site compares
    this one with on its own test cases (DeLong, NRI, IDI; ``comparisons.jsonl``); with ``personalise``
    each training site also tests its personalised model (``personalisation.jsonl``). Returns the
    threshold (None for a task without case probabilities, e.g. segmentation).
    """
    cfg, task = stage.cfg, task_for(stage.cfg)
    compared = dict(compared or {})
    delivery = (courier or Courier()).delivery(cfg, {name: (models or {})[name] for name in (*stage.crop_with, *compared)})
    refs = dict(delivery.refs)
    segmenters = tuple((name, refs[name]) for name in stage.crop_with)
    request = Evaluate(run=cfg, server_round=stage.end, stage_offset=stage.offset, segmenters=segmenters, split="val", model=run_dir.model)
    validators = {n: s for n, s in sites.items() if s.validates}
    testers = {n: s for n, s in sites.items() if s.tests}
    failures: dict[str, dict[str, str]] = {"val": {}, "test": {}}
    validation = _evaluate(grid, request, validators, arrays, delivery, failures["val"])
    threshold = None
    request = replace(request, split="test", personalise=personalise)
    if task.has_scores:
        threshold = threshold_from_site_metrics(validation.values(), cfg)
        logger.info("%s: operating point (%s on pooled validation histograms): %.4f", run_dir.rows, cfg.threshold_rule, threshold)
        validation = {name: at_threshold(m, threshold) for name, m in validation.items()}
        request = replace(request, threshold=threshold, grad_cam=run_dir.rows if explain else "", compare=tuple((name, refs[name]) for name in compared))
    test = _evaluate(grid, request, testers, arrays, delivery, failures["test"])
    if threshold is not None and midpoint_used(validation.values()):  # the report says why the threshold is 0.5
        validation = {name: {**m, MIDPOINT_FLAG: 1.0} for name, m in validation.items()}
        test = {name: {**m, MIDPOINT_FLAG: 1.0} for name, m in test.items()}
    for site, metrics in test.items():
        for name, model_b in compared.items():
            row = {key: metrics.pop(candidate_metric(comparison_prefix(name), key)) for key in COMPARISON_METRICS if candidate_metric(comparison_prefix(name), key) in metrics}
            if row:
                run_dir.record_comparison(site, "test", {"model_a": run_dir.rows, "model_b": model_b, **row})
    if personalise:
        record_personalisation(run_dir, testers, test, failures["test"])
    _record_final(run_dir, validators, testers, validation, test, task.label(), failures)
    return threshold


def segmentation_evaluation(
    grid: Grid, stage: Stage, sites: dict[int, NodeSite], models: Mapping[str, ArrayRecord], run_dir: RunDirectory, courier: Courier
) -> None:
    """Evaluate the stage's ``candidates`` (trained segmenters and their fusions) on every site's validation and test cases.

    One message per site and split refers to every segmenter; the site answers each candidate's
    metrics as ``<candidate>/<metric>``.
    """
    delivery = courier.delivery(stage.cfg, {name: models[name] for name in stage.candidates if name in models})
    request = Evaluate(run=stage.cfg, server_round=stage.end, stage_offset=stage.offset, segmenters=delivery.refs, candidates=stage.candidates)
    validators = {n: s for n, s in sites.items() if s.validates}
    testers = {n: s for n, s in sites.items() if s.tests}
    failures: dict[str, dict[str, str]] = {"val": {}, "test": {}}
    validation = _evaluate(grid, replace(request, split="val"), validators, None, delivery, failures["val"])
    test = _evaluate(grid, replace(request, split="test"), testers, None, delivery, failures["test"])
    for label in stage.candidates:
        val_rows, test_rows = (
            {site: {name: v for key, v in m.items() for cand, name in [split_candidate_metric(key)] if cand == label} for site, m in replies.items()}
            for replies in (validation, test)
        )
        _record_final(run_dir, validators, testers, val_rows, test_rows, label, failures)
        dice = {site: round(float(m["seg_dice"]), 3) for site, m in test_rows.items() if "seg_dice" in m}
        logger.info("%s segmentation %s: test Dice per site %s", run_dir.model, label, dice)


def _record_final(
    run_dir: RunDirectory,
    validators: Mapping[int, NodeSite],
    testers: Mapping[int, NodeSite],
    validation: Mapping[str, Mapping[str, Any]],
    test: Mapping[str, Mapping[str, Any]],
    segmenter: str,
    failures: Mapping[str, Mapping[str, str]],
) -> None:
    """Write the final rows of one model: validation at the validation sites, test everywhere; a missing row says why."""
    for split, targets, per_site in (("val", validators, validation), ("test", testers, test)):
        for site in targets.values():
            if site.name in per_site:
                run_dir.record("final", run_dir.rows, site.name, split, dict(per_site[site.name]), segmenter=segmenter)
            else:
                run_dir.record("final", run_dir.rows, site.name, split, None, failures[split].get(site.name, "no valid reply"), segmenter=segmenter)


def _evaluate(
    grid: Grid, request: Evaluate, sites: Mapping[int, NodeSite], arrays: ArrayRecord | None, delivery: Delivery, failures: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Send one evaluation request to each given node; valid replies' metrics by site name.

    The reason each other site gave no metrics (its error, a malformed reply, no reply) goes to ``failures``.
    """
    messages = [
        Message(RecordDict({**request.records(arrays), **delivery.records_for(node)}), dst_node_id=node, message_type=EVALUATE)
        for node in sites
    ]
    out: dict[str, dict[str, Any]] = {}
    answered: set[int] = set()
    for reply in grid.send_and_receive(messages, timeout=request.run.round_timeout):
        node = reply.metadata.src_node_id
        if reply.has_error():
            logger.error("site %s failed to evaluate %s: %s", sites[node].name, request.split, reply.error.reason)
            failures[sites[node].name] = f"error: {reply.error.reason}"
            continue
        try:
            out[sites[node].name] = EvaluateReply.from_content(reply.content).metrics
        except ProtocolError as err:
            logger.error("site %s sent a malformed evaluation reply: %s", sites[node].name, err)
            failures[sites[node].name] = f"malformed reply: {err}"
            continue
        answered.add(node)
    for node in sites:
        delivery.settled(node, node in answered)
    return out
