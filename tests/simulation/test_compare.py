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


def _variant(folder: Path, name: str, text: str) -> str:
    path = folder / f"{name}.toml"
    path.write_text(text)
    return str(path)


def test_a_file_variants_keys_reach_its_runs_over_the_base(tmp_path: Path) -> None:
    strong = _variant(tmp_path, "prox_strong", 'strategy = "fedprox"\nproximal-mu = 0.1\nnum-rounds = 3\n')
    runs = plan_runs(["fedavg", strong], [0], {"num-rounds": 2, "image-size": 32})
    seen: dict[str, dict[str, Any]] = {}

    def run_one(run: PlannedRun, threads: int) -> tuple[Path, dict[str, Any]]:
        seen[run.run_id] = dict(run.overrides)
        return Path(run.run_id), _report("fedavg", 0)

    table = summarise(run_all(runs, run_one, jobs=1, threads=1), None)
    assert seen["prox_strong-seed0"] == {
        "num-rounds": 3, "image-size": 32, "strategy": "fedprox", "proximal-mu": 0.1, "seed": 0, "baselines": False, "run-id": "prox_strong-seed0",
    }  # fmt: skip
    assert seen["fedavg-seed0"] == {"num-rounds": 2, "image-size": 32, "strategy": "fedavg", "seed": 0, "baselines": True, "run-id": "fedavg-seed0"}
    assert runs[1].source == strong and [r["model"] for r in table["rows"]][:2] == ["fedavg", "prox_strong"]


def test_a_file_variant_without_a_strategy_takes_the_base_one(tmp_path: Path) -> None:
    slow = _variant(tmp_path, "slow", "lr = 0.0001\n")
    (run,) = plan_runs([slow], [4], {"strategy": "fedprox"})
    assert run.overrides["strategy"] == "fedprox" and run.overrides["lr"] == 0.0001 and run.run_id == "slow-seed4"


def test_duplicate_labels_are_refused_by_name(tmp_path: Path) -> None:
    twin = _variant(tmp_path, "fedavg", 'strategy = "fedprox"\n')
    with pytest.raises(CompareError, match="label 'fedavg' given twice") as err:
        plan_runs(["fedavg", twin], [0], {})
    assert twin in str(err.value)
    with pytest.raises(CompareError, match="label 'fedprox' given twice"):
        plan_runs(["fedprox", "fedprox"], [0], {})


def test_invalid_variant_files_are_refused_naming_the_variant_and_key(tmp_path: Path) -> None:
    adam = _variant(tmp_path, "scaffold_adam", 'strategy = "scaffold"\n')  # SCAFFOLD without optimizer = "sgd"
    typo = _variant(tmp_path, "typo", "proximal_mu = 0.1\n")
    good = _variant(tmp_path, "good", 'strategy = "fedprox"\n')
    with pytest.raises(CompareError) as err:
        plan_runs([good, adam, typo, str(tmp_path / "missing.toml")], [0], {})
    message = str(err.value)
    assert "variant 'scaffold_adam'" in message and "'strategy' = 'scaffold' needs optimizer = 'sgd'" in message
    assert "variant 'typo'" in message and "unknown run config key 'proximal_mu'" in message
    assert "missing.toml not found" in message and "'good'" not in message
    assert plan_runs([adam], [0], {"optimizer": "sgd"})[0].overrides["strategy"] == "scaffold"  # the base can make it valid


# per seed: model -> site -> test AUC of a run that personalised, and its report's personalisation rows
PERSONAL = {
    0: [
        {"site": "a", "model": "federated", "status": "ok", "global_auc": 0.70, "personal_auc": 0.78},
        {"site": "b", "model": "federated", "status": "ok", "global_auc": 0.50, "personal_auc": 0.90},
        {"site": "ext", "model": "federated", "status": "global only", "global_auc": 0.60},
    ],
    1: [
        {"site": "a", "model": "federated", "status": "ok", "global_auc": 0.74, "personal_auc": 0.82},
        {"site": "b", "model": "federated", "status": "missing", "reason": "a DP site keeps no personalised model"},
        {"site": "ext", "model": "federated", "status": "global only", "global_auc": 0.66},
    ],
}  # fmt: skip


def test_a_personalising_variant_gets_a_personalised_row_by_hand(tmp_path: Path) -> None:
    ditto = _variant(tmp_path, "fedavg_ditto", 'strategy = "fedavg"\npersonalise = "ditto"\n')
    runs = plan_runs([ditto, "fedprox"], [0, 1], {})
    assert [r.personalise for r in runs[:2]] == ["ditto", "none"]

    def run_one(run: PlannedRun, threads: int) -> tuple[Path, dict[str, Any]]:
        if run.strategy == "fedprox":
            return Path(run.run_id), _report("fedprox", run.seed)
        return Path(run.run_id), _report("fedavg", run.seed) | {"personalisation": PERSONAL[run.seed]}

    table = run_comparison(tmp_path / "no-truth", runs, tmp_path / "out", run_one, jobs=1, threads=1)
    assert [r["model"] for r in table["rows"]] == ["fedavg_ditto", "fedavg_ditto (personalised)", "fedprox", "pooled", "local mean", "local best"]
    row = _row(table, "fedavg_ditto (personalised)")
    assert row["kind"] == "personalised" and row["n_seeds"] == 2 and "all" not in row["sites"]
    a, b, ext = row["sites"]["a"], row["sites"]["b"], row["sites"]["ext"]
    # a: personalised 0.78, 0.82 -> mean 0.80, SD sqrt(2 * 0.02^2) = 0.028284; pooled a: 0.80, 0.76
    assert a["mean"] == pytest.approx(0.80) and a["sd"] == pytest.approx(0.0282843, abs=1e-6)
    assert a["frac_pooled"] == pytest.approx((0.78 / 0.80 + 0.82 / 0.76) / 2)
    assert b["n"] == 1 and b["mean"] == pytest.approx(0.90) and b["frac_pooled"] is None  # seed 1 sent none; no pooled value at b
    # ext keeps the global model: 0.60, 0.66, as the variant's own row; pooled ext 0.75, 0.66
    assert ext["mean"] == pytest.approx(0.63) and ext["frac_pooled"] == pytest.approx((0.60 / 0.75 + 0.66 / 0.66) / 2)
    assert row["sites"]["external"]["mean"] == pytest.approx(0.63) == _row(table, "fedavg_ditto")["sites"]["ext"]["mean"]
    assert table["personalised"] == ["fedavg_ditto (personalised)"] and table["variants"]["fedavg_ditto"] == {"source": ditto, "personalise": "ditto"}
    markdown = (tmp_path / "out" / "comparison.md").read_text()
    assert "| fedavg_ditto (personalised) | 0.630 ± 0.042 |" in markdown and "at the external sites, the global model" in markdown


def test_without_personalisation_there_is_no_personalised_row() -> None:
    table = summarise(run_all(plan_runs(["fedavg"], [0], {}), _fake(), 1, 1), None)
    assert table["personalised"] == [] and not any("personalised" in r["model"] for r in table["rows"])


def test_cli_dry_run_lists_the_variants_and_refuses_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from simulation.cli import main  # noqa: PLC0415
    from tests.conftest import make_site  # noqa: PLC0415

    make_site(tmp_path / "sites", "a", n=4)
    finetune = _variant(tmp_path, "ft", 'personalise = "finetune"\n')
    args = ["compare", "--sites", str(tmp_path / "sites"), "--seeds", "0,1", "--out", str(tmp_path / "out"), "--dry-run"]
    assert main([*args, "--strategies", f"fedprox,{finetune}"]) == 0
    printed = capsys.readouterr().out
    assert "fedprox-seed1: strategy fedprox, seed 1, with the pooled and local-only baselines\n" in printed
    assert f"ft-seed1: variant ft ({finetune}: strategy fedavg, personalise finetune), seed 1\n" in printed
    bad = _variant(tmp_path, "bad", "trim-beta = 0.7\n")
    assert main([*args, "--strategies", f"fedavg,{bad}"]) == 2
    err = capsys.readouterr().err
    assert "variant 'bad'" in err and "'trim-beta'" in err
