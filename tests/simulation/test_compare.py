"""Strategy comparison with an injected run function: planning, aggregation by hand, failures, parallel bounds, the files."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from simulation.compare import CompareError, PlannedRun, default_jobs, plan_runs, run_all, run_comparison, summarise, threads_per_job
from simulation.compare_report import FIGURE

SITES = [{"name": "a", "role": "train"}, {"name": "b", "role": "train"}, {"name": "ext", "role": "external"}]
# test AUC per (strategy, seed): model -> site -> value
AUCS = {
    ("fedavg", 0): {"federated": {"a": 0.70, "ext": 0.60}, "pooled": {"a": 0.80, "ext": 0.75}, "local:a": {"a": 0.72, "ext": 0.50}, "local:b": {"a": 0.60, "ext": 0.58}},
    ("fedavg", 1): {"federated": {"a": 0.74, "ext": 0.66}, "pooled": {"a": 0.76, "ext": 0.66}, "local:a": {"a": 0.70, "ext": 0.52}, "local:b": {"a": 0.64, "ext": 0.62}},
    ("fedprox", 0): {"federated": {"a": 0.68, "ext": 0.70}},
    ("fedprox", 1): {"federated": {"a": 0.72, "ext": 0.72}},
}  # fmt: skip
CEILINGS = {"a": 0.8, "ext": 0.9}


def _report(strategy: str, seed: int) -> dict[str, Any]:
    rows = [{"model": m, "site": s, "split": "test", "auc": v} for m, sites in AUCS[(strategy, seed)].items() for s, v in sites.items()]
    rows.append({"model": "federated", "site": "ext", "split": "val", "auc": 0.01})  # a validation row, never in the table
    curve = {"model": "federated", "stage": "", "metric": "auc", "offset": 0, "rounds": [1, 2], "sites": {}, "pooled": {"value": [0.5 + seed / 10, 0.7], "loss": [1, 1]}}
    return {"sites": SITES, "classification": rows, "convergence": {"series": [curve]}}


def _fake(fail: set[tuple[str, int]] = frozenset()) -> Any:  # noqa: ANN401
    def run_one(run: PlannedRun, threads: int) -> tuple[Path, dict[str, Any]]:
        if (run.strategy, run.seed) in fail:
            raise RuntimeError("site_b ran out of memory")
        return Path(run.run_id), _report(run.strategy, run.seed)

    return run_one


def _row(table: dict[str, Any], model: str) -> dict[str, Any]:
    return next(r for r in table["rows"] if r["model"] == model)


def test_plan_gives_each_seed_every_strategy_and_the_baselines_once() -> None:
    runs = plan_runs(["fedavg", "fedprox"], [0, 1], {"num-rounds": 2})
    assert [(r.strategy, r.seed, r.baselines) for r in runs] == [("fedavg", 0, True), ("fedprox", 0, False), ("fedavg", 1, True), ("fedprox", 1, False)]
    assert runs[1].overrides == {"num-rounds": 2, "strategy": "fedprox", "seed": 0, "baselines": False, "run-id": "fedprox-seed0"}


def test_unknown_strategies_are_refused_before_anything_runs_and_named() -> None:
    with pytest.raises(CompareError) as err:
        plan_runs(["fedavg", "nosuch", "alsobad"], [0], {})
    assert "'nosuch'" in str(err.value) and "'alsobad'" in str(err.value) and "'fedavg'" not in str(err.value)


def test_mean_sd_and_fractions_of_pooled_and_ceiling_by_hand() -> None:
    runs = plan_runs(["fedavg", "fedprox"], [0, 1], {})
    table = summarise(run_all(runs, _fake(), jobs=2, threads=1), CEILINGS)
    prox = _row(table, "fedprox")["sites"]
    # ext: values 0.70, 0.72 -> mean 0.71, SD sqrt(((0.01)^2 * 2) / 1) = 0.014142; pooled 0.75, 0.66: (0.70/0.75 + 0.72/0.66) / 2
    assert prox["ext"]["mean"] == pytest.approx(0.71) and prox["ext"]["sd"] == pytest.approx(0.0141421, abs=1e-6)
    assert prox["ext"]["frac_pooled"] == pytest.approx((0.70 / 0.75 + 0.72 / 0.66) / 2)
    assert prox["ext"]["frac_ceiling"] == pytest.approx(0.71 / 0.9)
    assert prox["external"]["mean"] == pytest.approx(0.71)  # one external site: the same numbers
    assert prox["a"]["frac_ceiling"] == pytest.approx(0.70 / 0.8)
    local_mean, local_best = _row(table, "local mean")["sites"]["ext"], _row(table, "local best")["sites"]["ext"]
    assert local_mean["mean"] == pytest.approx(((0.50 + 0.58) / 2 + (0.52 + 0.62) / 2) / 2)
    assert local_best["mean"] == pytest.approx((0.58 + 0.62) / 2)
    assert _row(table, "pooled")["sites"]["a"]["frac_pooled"] == pytest.approx(1.0)
    assert _row(table, "fedavg")["wall_s"]["includes_baselines"] and not _row(table, "fedprox")["wall_s"]["includes_baselines"]


def test_without_a_truth_the_ceiling_columns_are_empty() -> None:
    table = summarise(run_all(plan_runs(["fedavg"], [0], {}), _fake(), 1, 1), None)
    assert all(s["frac_ceiling"] is None for r in table["rows"] for s in r["sites"].values())


def test_a_failed_run_is_recorded_and_the_others_go_on(tmp_path: Path) -> None:
    runs = plan_runs(["fedavg", "fedprox"], [0, 1], {})
    table = run_comparison(tmp_path / "no-truth", runs, tmp_path / "out", _fake({("fedprox", 1)}), jobs=2, threads=1)
    status = {(r["strategy"], r["seed"]): r["status"] for r in table["runs"]}
    assert status == {("fedavg", 0): "ok", ("fedprox", 0): "ok", ("fedavg", 1): "ok", ("fedprox", 1): "failed"}
    prox = _row(table, "fedprox")
    assert prox["n_seeds"] == 1 and prox["sites"]["ext"]["mean"] == pytest.approx(0.70)
    assert prox["failed"] == [{"seed": 1, "error": "RuntimeError: site_b ran out of memory"}]
    assert "no _truth/bayes_auc.json" in table["ceiling_note"]
    markdown = (tmp_path / "out" / "comparison.md").read_text()
    assert "seed 1: RuntimeError: site_b ran out of memory" in markdown and "| 0.700 | 93.3% |" in markdown
    saved = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert saved["curves"]["fedavg"] == {"rounds": [1, 2], "pooled": [pytest.approx(0.55), 0.7]}  # mean over seeds of 0.5 and 0.6
    page = (tmp_path / "out" / "comparison.html").read_text()
    assert "data:image/png;base64," in page and (tmp_path / "out" / FIGURE).read_bytes().startswith(b"\x89PNG")


def test_parallel_runs_never_exceed_jobs_and_do_overlap() -> None:
    lock, active, peak = threading.Lock(), [0], [0]
    together = threading.Barrier(2, timeout=30)  # the first two runs must be running at the same time

    def run_one(run: PlannedRun, threads: int) -> tuple[Path, dict[str, Any]]:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        if run.seed < 2 and run.strategy == "fedavg":
            together.wait()
        with lock:
            active[0] -= 1
        return Path(run.run_id), _report("fedprox", 0)

    runs = [PlannedRun("fedavg", seed, False, {}) for seed in range(6)]
    outcomes = run_all(runs, run_one, jobs=2, threads=1)
    assert all(not o.error for o in outcomes) and peak[0] == 2


def test_jobs_and_threads_fit_the_machine() -> None:
    assert default_jobs(cores=16, memory_gib=12) == 4  # memory-bound: 12 GiB / 3 GiB per run
    assert default_jobs(cores=2, memory_gib=128) == 2 and default_jobs(cores=8, memory_gib=1) == 1
    for jobs in (1, 2, 3, 5, 16):
        assert 1 <= threads_per_job(jobs, cores=16) and jobs * threads_per_job(jobs, cores=16) <= 16
    assert threads_per_job(3, cores=16) == 5


def test_cli_dry_run_prints_the_plan_and_refuses_unknown_strategies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from simulation.cli import main  # noqa: PLC0415
    from tests.conftest import make_site  # noqa: PLC0415

    make_site(tmp_path / "sites", "a", n=4)
    args = ["compare", "--sites", str(tmp_path / "sites"), "--seeds", "0,1", "--out", str(tmp_path / "out"), "--jobs", "8", "--dry-run"]
    assert main([*args, "--strategies", "fedavg,fedprox"]) == 0
    printed = capsys.readouterr().out
    assert "4 runs, 4 at a time" in printed and "fedprox-seed1: strategy fedprox, seed 1\n" in printed
    assert not (tmp_path / "out").exists()
    assert main([*args, "--strategies", "fedavg,fedmystery"]) == 2
    assert "'fedmystery'" in capsys.readouterr().err
