"""Benchmark: run one run-config preset in simulation on a sites folder, and record its wall time and every model's test AUC.

Run: ``python bench/bench_preset.py --sites phantom/multimodal --run-config experiments/seed003_fusion.toml
--out bench/results/<date>-<machine>-seed003.json [--set key=value ...]``. The run goes through
``axilla-simulate run`` in a child process (timed from start to exit, its peak memory from the
kernel's accounting of children); the record holds each model's test AUC and CI per site from
``report.json``, the external site's DeLong comparisons, the segmentation Dice where there is one, the
phantom's per-modality ceilings (``_truth/modality_auc.json``) and Bayes AUCs. A figure, not a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    """Run the preset, then write the record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=Path, required=True)
    parser.add_argument("--run-config", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/bench"))
    parser.add_argument("--set", action="append", default=[], help="run config override key=value (repeatable)")
    args = parser.parse_args(argv)
    command = [sys.executable, "-m", "simulation.cli", "run", "--sites", str(args.sites), "--run-config", str(args.run_config), "--runs-dir", str(args.runs_dir)]
    for item in args.set:
        command += ["--set", item]
    before = set(args.runs_dir.glob("*")) if args.runs_dir.exists() else set()
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=Path(__file__).resolve().parents[1])
    wall = time.perf_counter() - start
    (run_dir,) = set(args.runs_dir.glob("*")) - before
    record = summarise(run_dir, args.sites)
    record |= {
        "what": f"{args.run_config.name} on {args.sites}", "machine": f"{platform.node()} ({platform.processor() or platform.machine()})",
        "wall_time_s": round(wall, 1), "peak_child_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "overrides": args.set, "run_dir": str(run_dir),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: record[k] for k in ("what", "wall_time_s", "peak_child_rss_mib")}))
    for row in record["test_auc"]:
        print(f"{row['model']:40s} {row['site']:14s} {row.get('auc', float('nan')):.3f}")
    return 0


def summarise(run_dir: Path, sites: Path) -> dict[str, Any]:
    """The report's test AUCs, external comparisons and Dice, with the phantom's ceilings."""
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    external = [s["name"] for s in report["sites"] if s["role"] == "external"]
    out: dict[str, Any] = {
        "run": report["run"],
        "test_auc": [{k: r[k] for k in ("model", "site", "n", "auc", "auc_ci") if k in r} for r in report["classification"] if r["split"] == "test"],
        "comparisons": [c for c in report.get("comparisons", []) if c["site"] in external],
        "segmentation": [r for r in report.get("segmentation", []) if r.get("split") == "test"],
        "modalities": report.get("modalities", {}).get("cases", {}),
    }
    truth = sites / "_truth"
    for name, key in (("modality_auc.json", "modality_ceilings"), ("bayes_auc.json", "bayes_auc")):
        if (truth / name).exists():
            out[key] = json.loads((truth / name).read_text(encoding="utf-8"))
    if (run_dir / "clinical.json").exists():
        out["clinical_rows"] = [r for r in out["test_auc"] if "/" not in r["model"]]
    return out


if __name__ == "__main__":
    raise SystemExit(main())
