"""Strategy comparison: the same sites and seeds under each variant (a strategy, or a run-config file), with the pooled and local-only baselines once per seed.

Plain functions: ``plan_runs`` (validated before anything starts), ``run_all`` (parallel, a failed run recorded
and the others going on), ``summarise`` (mean and SD over seeds, fractions of pooled and of the Bayes
ceiling). The run function is injected: ``subprocess_runner`` runs ``axilla-simulate run`` in a child process.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluation.text import finite as _finite
from models.run_config import RunConfig, RunConfigError, Scalar
from simulation.compare_report import write_comparison
from simulation.compare_variants import PERSONALISED, Variant, duplicate_labels, personalised_values, read_variant

SCHEMA = "axilla.comparison/1"
RUN_GIB = 3.0  # memory one simulation (its Ray workers included) is given when choosing --jobs
POOLED = "pooled"
LOCAL_MEAN = "local mean"
LOCAL_BEST = "local best"


class CompareError(ValueError):
    """The comparison cannot start (an unknown strategy, a bad variant file or run config, a label given twice)."""


@dataclass(frozen=True)
class PlannedRun:
    """One simulation of the comparison: a variant (``strategy``: its label) at a seed; ``baselines``: this run also trains the pooled and local-only models.

    ``source``: the variant's run-config file ('' for a strategy name); ``personalise``: the run's resolved ``personalise``.
    """

    strategy: str
    seed: int
    baselines: bool
    overrides: Mapping[str, Scalar]
    source: str = ""
    personalise: str = "none"

    @property
    def run_id(self) -> str:
        """The run directory's name."""
        return f"{self.strategy}-seed{self.seed}"


@dataclass
class RunOutcome:
    """What one run left: its report (or the error that stopped it) and its wall time."""

    run: PlannedRun
    wall_s: float
    report: dict[str, Any] | None = None
    run_dir: str = ""
    error: str = ""


RunFn = Callable[[PlannedRun, int], tuple[Path, dict[str, Any]]]  # (run, torch threads) -> run dir, its report.json


def plan_runs(entries: Sequence[str | Variant], seeds: Sequence[int], overrides: Mapping[str, Scalar]) -> list[PlannedRun]:
    """Every (variant, seed) run, the first variant of each seed carrying the baselines.

    An entry is a strategy name or a run-config TOML file (label: its stem; its keys over ``overrides``).
    Every variant's full config is checked first; the bad ones are refused, all named, as are labels given twice.
    """
    if not entries or not seeds:
        raise CompareError("compare needs at least one strategy and one seed")
    variants: list[Variant] = []
    bad: list[str] = []
    for entry in entries:
        try:
            variants.append(entry if isinstance(entry, Variant) else read_variant(entry))
        except RunConfigError as err:
            bad.append(f"variant {entry!r} refused: {err}")
    twice = duplicate_labels(variants)
    bad += [f"label {label!r} given twice ({', '.join(given)}): each variant needs its own label (a file's stem)" for label, given in twice.items()]
    base = RunConfig().to_mapping() | dict(overrides)
    resolved: dict[str, RunConfig] = {}
    for v in variants:
        try:
            resolved[v.label] = RunConfig.from_mapping(base | dict(v.keys))
        except RunConfigError as err:
            bad.append(f"variant {v.label!r} ({v.source}) refused: {err}" if v.source else f"strategy {v.label!r} refused: {err}")
    if bad:
        raise CompareError("; ".join(bad))
    return [
        PlannedRun(
            v.label, seed, i == 0,
            dict(overrides) | dict(v.keys) | {"strategy": resolved[v.label].strategy, "seed": seed, "baselines": i == 0, "run-id": f"{v.label}-seed{seed}"},
            v.source, resolved[v.label].personalise,
        )
        for seed in seeds
        for i, v in enumerate(variants)
    ]  # fmt: skip


def default_jobs(cores: int | None = None, memory_gib: float | None = None) -> int:
    """Parallel runs the machine allows: one per core, at most one per ``RUN_GIB`` of memory, at least one."""
    cores = cores or os.cpu_count() or 1
    if memory_gib is None:
        memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return max(1, min(cores, int(memory_gib // RUN_GIB)))


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """Torch threads of each run, so that jobs x threads <= cores."""
    return max(1, (cores or os.cpu_count() or 1) // max(jobs, 1))


def run_all(runs: Sequence[PlannedRun], run_one: RunFn, jobs: int, threads: int) -> list[RunOutcome]:
    """Run everything, at most ``jobs`` at a time; a run that raises is recorded with its error and the others go on."""
    lock = threading.Lock()
    outcomes: dict[int, RunOutcome] = {}

    def work(i: int, run: PlannedRun) -> None:
        start = time.perf_counter()
        try:
            run_dir, report = run_one(run, threads)
            outcome = RunOutcome(run, time.perf_counter() - start, report, str(run_dir))
        except Exception as err:  # noqa: BLE001  a failed run is a row of the table, not the end of the comparison
            outcome = RunOutcome(run, time.perf_counter() - start, error=f"{type(err).__name__}: {err}")
        with lock:
            outcomes[i] = outcome

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for future in [pool.submit(work, i, run) for i, run in enumerate(runs)]:
            future.result()
    return [outcomes[i] for i in range(len(runs))]


def subprocess_runner(sites: Path, runs_dir: Path, timeout_s: float | None = None) -> RunFn:
    """A run function that runs ``python -m simulation.cli run`` in a child process limited to ``threads`` threads."""

    def run_one(run: PlannedRun, threads: int) -> tuple[Path, dict[str, Any]]:
        env = os.environ | {k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
        sets = [arg for key, value in run.overrides.items() for arg in ("--set", f"{key}={_toml(value)}")]
        command = [sys.executable, "-m", "simulation.cli", "run", "--sites", str(sites), "--runs-dir", str(runs_dir), "--client-cpus", str(threads), *sets]
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout_s, check=False)
        run_dir = Path(runs_dir) / run.run_id
        (Path(runs_dir) / f"{run.run_id}.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
        if proc.returncode != 0 or not (run_dir / "report.json").exists():
            tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"exit {proc.returncode}: {tail[0]} (log: {run.run_id}.log)")
        return run_dir, json.loads((run_dir / "report.json").read_text(encoding="utf-8"))

    return run_one


def summarise(outcomes: Sequence[RunOutcome], ceilings: Mapping[str, float] | None) -> dict[str, Any]:
    """The comparison table: per variant (and its personalised models, if it personalised) and baseline, each site's and the external sites' test metric over seeds."""
    strategies = list(dict.fromkeys(o.run.strategy for o in outcomes))
    metric = next((_metric(o.report) for o in outcomes if o.report), "auc")
    ceilings = ceilings if metric == "auc" else None  # the phantom's ceilings are AUCs
    per_seed: dict[str, dict[int, dict[str, float]]] = {}  # entity -> seed -> site -> value
    external: set[str] = set()
    for o in outcomes:
        if not o.report:
            continue
        external |= {s["name"] for s in o.report.get("sites", []) if s.get("role") == "external"}
        values = final_values(o.report, metric)
        per_seed.setdefault(o.run.strategy, {})[o.run.seed] = values.get("federated", {})
        if o.run.personalise != "none" and metric == "auc":
            per_seed.setdefault(o.run.strategy + PERSONALISED, {})[o.run.seed] = personalised_values(o.report, values.get("federated", {}))
        if o.run.baselines:
            per_seed.setdefault(POOLED, {})[o.run.seed] = values.get(POOLED, {})
            for name, combine in ((LOCAL_MEAN, statistics.fmean), (LOCAL_BEST, max)):
                per_seed.setdefault(name, {})[o.run.seed] = _combine_locals(values, combine)
    pooled = {seed: values | _external(values, external) for seed, values in per_seed.get(POOLED, {}).items()}
    personal = [name + PERSONALISED for name in strategies if metric == "auc" and any(o.run.strategy == name and o.run.personalise != "none" for o in outcomes)]
    models = [m for name in strategies for m in (name, name + PERSONALISED) if m == name or m in personal]
    rows = []
    for name in [*models, POOLED, LOCAL_MEAN, LOCAL_BEST]:
        seeds = per_seed.get(name, {})
        # a personalised row's runs are its variant's, whose row shows their wall times and failures
        mine = [] if name in personal else [o for o in outcomes if o.run.strategy == name or (name not in strategies and o.run.baselines)]
        kind = "strategy" if name in strategies else "personalised" if name in personal else "baseline"
        row: dict[str, Any] = {"model": name, "kind": kind, "n_seeds": len(seeds)}
        sites = sorted({site for values in seeds.values() for site in values}, key=lambda s: (s == "all", s))
        with_external = {seed: values | _external(values, external) for seed, values in seeds.items()}
        columns = [*sites, *(["external"] if external else [])]
        row["sites"] = {site: _stats(with_external, site, pooled, _ceiling(site, ceilings, external)) for site in columns}
        if name in strategies:
            walls = [o.wall_s for o in mine if not o.error]
            row["wall_s"] = _mean_sd(walls) | {"includes_baselines": any(o.run.baselines for o in mine)}
        row["failed"] = [{"seed": o.run.seed, "error": o.error} for o in mine if o.error and (name in strategies or o.run.baselines)]
        rows.append(row)
    return {"metric": metric, "external_sites": sorted(external), "rows": rows, "personalised": personal}


def run_comparison(
    sites: Path, runs: Sequence[PlannedRun], out: Path, run_one: RunFn, jobs: int, threads: int
) -> dict[str, Any]:
    """Run the plan, then write comparison.json, comparison.md and comparison.html under ``out``; return the table."""
    start = time.perf_counter()
    outcomes = run_all(runs, run_one, jobs, threads)
    ceilings = read_ceilings(sites)
    table: dict[str, Any] = {"schema": SCHEMA, "sites_dir": str(Path(sites).resolve()), "jobs": jobs, "threads_per_job": threads}
    table |= {"strategies": list(dict.fromkeys(r.strategy for r in runs)), "seeds": list(dict.fromkeys(r.seed for r in runs))}
    table["variants"] = {r.strategy: {"source": r.source, "personalise": r.personalise} for r in runs}
    table |= summarise(outcomes, ceilings)
    table["ceilings"] = ceilings
    if not ceilings:
        table["ceiling_note"] = f"{sites} has no _truth/bayes_auc.json: the sites have no known Bayes ceiling, so those columns are empty"
    elif table["metric"] == "dice":
        table["ceiling_note"] = "the Bayes ceilings are AUCs of the true risk: there is none for Dice, so those columns are empty"
    table["runs"] = [
        {"strategy": o.run.strategy, "seed": o.run.seed, "baselines": o.run.baselines, "status": "failed" if o.error else "ok",
         "wall_s": o.wall_s, "run_dir": o.run_dir, **({"error": o.error} if o.error else {})}
        for o in outcomes
    ]  # fmt: skip
    table["curves"] = {name: {"rounds": r, "pooled": v} for name, (r, v) in mean_curves(outcomes).items()}
    table["wall_s_total"] = time.perf_counter() - start
    write_comparison(Path(out), table)
    return table


def describe_plan(runs: Sequence[PlannedRun], jobs: int, threads: int) -> list[str]:
    """The plan as lines (``--dry-run``)."""
    lines = [f"{len(runs)} runs, {jobs} at a time, {threads} torch thread(s) each:"]
    for run in runs:
        what = f"strategy {run.strategy}"
        if run.source:
            what = f"variant {run.strategy} ({run.source}: strategy {run.overrides['strategy']}" + ("" if run.personalise == "none" else f", personalise {run.personalise}") + ")"
        lines.append(f"  {run.run_id}: {what}, seed {run.seed}" + (", with the pooled and local-only baselines" if run.baselines else ""))
    return lines


def final_values(report: Mapping[str, Any], metric: str) -> dict[str, dict[str, float]]:
    """Each model's test-split metric per site (``all``: pooled over sites) from a report.json."""
    out: dict[str, dict[str, float]] = {}
    section = "segmentation" if metric == "dice" else "classification"
    for row in report.get(section, []):
        if row.get("split") == "test" and _finite(row.get(metric)) and not row.get("segmenter", "").startswith("fusion"):
            out.setdefault(row["model"], {})[row["site"]] = float(row[metric])
    return out


def pooled_curve(report_convergence: Mapping[str, Any] | None) -> tuple[list[int], list[float | None]] | None:
    """The federated model's last stage's pooled validation series (rounds, values), if the run validated per round."""
    series = [s for s in (report_convergence or {}).get("series", []) if s["model"].split("/")[0] == "federated"]
    if not series:
        return None
    last = max(series, key=lambda s: s["offset"])
    return last["rounds"], last["pooled"]["value"]


def mean_curves(outcomes: Sequence[RunOutcome]) -> dict[str, tuple[list[int], list[float | None]]]:
    """Per variant, the pooled validation curve averaged over its seeds (rounds where any seed reported)."""
    out: dict[str, tuple[list[int], list[float | None]]] = {}
    for strategy in dict.fromkeys(o.run.strategy for o in outcomes):
        curves = [c for o in outcomes if o.run.strategy == strategy and o.report and (c := pooled_curve(o.report.get("convergence")))]
        rounds = sorted({r for c in curves for r in c[0]})
        values = []
        for r in rounds:
            seen = [c[1][c[0].index(r)] for c in curves if r in c[0]]
            finite = [v for v in seen if _finite(v)]
            values.append(statistics.fmean(finite) if finite else None)
        if rounds:
            out[strategy] = (rounds, values)
    return out


def read_ceilings(sites: Path) -> dict[str, float] | None:
    """The phantom's Bayes AUC per site (``_truth/bayes_auc.json``), or None for sites without a truth."""
    path = Path(sites) / "_truth" / "bayes_auc.json"
    return {k: float(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()} if path.exists() else None


def _metric(report: Mapping[str, Any] | None) -> str:
    """``dice`` for a segmentation run (no classification rows), else ``auc``."""
    report = report or {}
    return "dice" if report.get("segmentation") and not report.get("classification") else "auc"


def _combine_locals(values: Mapping[str, Mapping[str, float]], combine: Callable[[list[float]], float]) -> dict[str, float]:
    """Per site, the local-only models' values combined (mean, or best)."""
    locals_ = [v for model, v in values.items() if model.startswith("local:")]
    sites = {site for v in locals_ for site in v}
    return {site: combine([v[site] for v in locals_ if site in v]) for site in sites}


def _external(values: Mapping[str, float], external: set[str]) -> dict[str, float]:
    """The mean over the external sites of one seed's values, as pseudo-site ``external``."""
    seen = [values[s] for s in sorted(external) if s in values]
    return {"external": statistics.fmean(seen)} if seen else {}


def _stats(seeds: Mapping[int, Mapping[str, float]], site: str, pooled: Mapping[int, Mapping[str, float]], ceiling: float | None) -> dict[str, Any]:
    """Mean and SD over seeds of one site's value, and its per-seed fractions of pooled and of the ceiling, averaged."""
    values = {seed: v[site] for seed, v in seeds.items() if site in v}
    out: dict[str, Any] = {"n": len(values)} | _mean_sd(list(values.values()))
    ratios = [v / pooled[seed][site] for seed, v in values.items() if pooled.get(seed, {}).get(site)]
    out["frac_pooled"] = statistics.fmean(ratios) if ratios else None
    out["frac_ceiling"] = statistics.fmean([v / ceiling for v in values.values()]) if ceiling and values else None
    return out


def _ceiling(site: str, ceilings: Mapping[str, float] | None, external: set[str]) -> float | None:
    """A site's Bayes ceiling; ``external``: the mean of the external sites' ceilings; ``all`` has none."""
    if not ceilings:
        return None
    if site == "external":
        known = [ceilings[s] for s in sorted(external) if s in ceilings]
        return statistics.fmean(known) if known else None
    return ceilings.get(site)


def _mean_sd(values: list[float]) -> dict[str, float | None]:
    """Mean and sample SD (None with fewer than two values)."""
    return {"mean": statistics.fmean(values) if values else None, "sd": statistics.stdev(values) if len(values) > 1 else None}


def _toml(value: Scalar) -> str:
    """A run config value as a TOML scalar for ``--set``."""
    return json.dumps(value) if isinstance(value, (str, bool)) else repr(value)
