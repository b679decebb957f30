"""Benchmark: what DP-SGD costs and what it leaves of the model, on the demo phantom.

Run: ``.venv/bin/python bench/bench_dp.py cost [--image-size 64]`` prints and writes, for each
model the project offers (the small classifier, the four segmenters, the end-to-end model), the
seconds of one local epoch at the demo's first training site with and without DP-SGD (same
dp-compatible network, same batch size, same cases).

``.venv/bin/python bench/bench_dp.py utility [--epsilons 1,3,8]`` runs the demo with DP
(``experiments/dp.toml``) once per target epsilon, and the demo without DP (its default run
config), in fresh phantom copies, and writes the external site's AUC of every model (federated,
pooled, each local-only). A last run gives the last training site a budget too small for the
schedule (``--too-small``, default epsilon 0.01) and records what that site answered.

Results go to ``bench/results/<date>-<host>-dp-<kind>.json``; the figures never pass or fail.
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
MODELS = {
    "classifier small": {"task": "classification", "model": "small"},
    **{f"segmenter {name}": {"task": "segmentation", "segmenter": name} for name in ("unet", "unetpp", "deeplabv3", "deeplabv3plus")},
    "end-to-end (DeepLabV3+ & small)": {"task": "end-to-end", "segmenter": "deeplabv3plus"},
}


def cost(image_size: int, repeats: int) -> list[dict[str, Any]]:
    """Seconds per local epoch with and without DP-SGD, per model, at the demo's first training site."""
    import torch

    from client.data import load_site_data
    from client.site import train_round
    from client.site_config import load_site_config
    from models.run_config import RunConfig
    from models.task import build_network
    from simulation.phantom import make_phantom
    from simulation.phantom.writer import require_dp

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        plain, private = Path(tmp) / "plain", Path(tmp) / "dp"
        summary = make_phantom(plain, "demo", 0)
        make_phantom(private, "demo", 0)
        require_dp(private, 8.0)
        site = summary.sites[0]
        for label, keys in MODELS.items():
            cfg = RunConfig(
                image_size=image_size, seg_image_size=image_size, local_epochs=1, num_rounds=repeats, model_variant="dp-compatible",
                run_id=f"bench-{time.time_ns()}", dp_batch_size=load_site_config(plain / site / "site.yaml").compute.batch_size,
            ).replace(**keys)  # fmt: skip
            row: dict[str, Any] = {"model": label, "image_size": image_size}
            for kind, root in (("without_dp", plain), ("with_dp", private)):
                config = load_site_config(root / site / "site.yaml")
                data = load_site_data(config, image_size)
                if cfg.task != "classification":
                    data.require_masks("train")
                state = build_network(cfg).state_dict()
                train_round(data, state, cfg, 1, total_rounds=repeats + 1)  # warm-up (first-call costs)
                times = []
                for r in range(repeats):
                    start = time.perf_counter()
                    train_round(data, state, cfg, r + 2, total_rounds=repeats + 1)
                    times.append(time.perf_counter() - start)
                row[f"{kind}_s_per_epoch"] = round(min(times), 3)
                row["cases"], row["batch_size"] = len(data.splits["train"]), config.compute.batch_size
            row["ratio"] = round(row["with_dp_s_per_epoch"] / row["without_dp_s_per_epoch"], 2)
            rows.append(row)
            print(f"{label}: {row['without_dp_s_per_epoch']:.2f} s/epoch without DP, {row['with_dp_s_per_epoch']:.2f} s with DP-SGD ({row['ratio']}x)", flush=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    return rows


def _demo_run(eps: float, too_small: float | None = None) -> dict[str, Any]:
    """One demo run in a fresh phantom: with DP at ``eps`` (``experiments/dp.toml``), or without (eps 0, the default run config)."""
    with tempfile.TemporaryDirectory() as tmp:
        sites = Path(tmp) / "phantom"
        make = [sys.executable, "-m", "simulation.cli", "make-phantom", "--out", str(sites)] + (["--dp-epsilon", str(eps)] if eps else [])
        subprocess.run(make, cwd=REPO, check=True, capture_output=True)
        if too_small is not None:
            last = sorted(p.parent for p in sites.glob("*/site.yaml") if "role: train" in p.read_text())[-1] / "site.yaml"
            last.write_text(last.read_text().replace(f"target_epsilon: {eps}", f"target_epsilon: {too_small}"))
        start = time.perf_counter()
        config = ["--run-config", str(REPO / "experiments" / "dp.toml")] if eps else []
        done = subprocess.run(
            [sys.executable, "-m", "simulation.cli", "run", "--sites", str(sites), *config, "--runs-dir", str(Path(tmp) / "runs")],
            cwd=REPO, capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"epsilon {eps}: the run failed:\n{done.stderr[-3000:]}")
        report = json.loads((Path(done.stdout.strip().splitlines()[-1]) / "report.json").read_text())
    aucs = {r["model"]: round(r["auc"], 3) for r in report["classification"] if r["site"] == "hospital_ext" and r["split"] == "test"}
    spent = {p["model"] + "@" + p["site"]: round(p["epsilon"], 3) for p in report.get("privacy", [])}
    row = {
        "target_epsilon": eps or None, "run_config": "experiments/dp.toml" if eps else "default", "external_auc": aucs,
        "epsilon_spent": spent, "variant": report["run"].get("model_variant"), "wall_s": round(time.perf_counter() - start, 1),
    }  # fmt: skip
    if too_small is not None:
        row["too_small"] = {"epsilon": too_small, "missing": [m for m in report.get("missing", []) if m.get("model") == "federated"]}
    return row


def utility(epsilons: list[float], too_small: float) -> list[dict[str, Any]]:
    """The demo's external-site AUC of every model, per target epsilon and without DP; then a run with one budget too small."""
    rows = []
    for eps in [*epsilons, 0.0]:
        rows.append(_demo_run(eps))
        print(f"epsilon {eps or 'none'}: external AUC {rows[-1]['external_auc']} ({rows[-1]['wall_s']} s)", flush=True)
    rows.append(_demo_run(max(epsilons), too_small))
    print(f"one site at epsilon {too_small}: {rows[-1]['too_small']['missing'][:1]}", flush=True)
    return rows


def main() -> int:
    """Run one of the two benchmarks and write its result file."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("cost", "utility"))
    parser.add_argument("--image-size", type=int, default=64, help="cost: the networks' input size (default 64)")
    parser.add_argument("--repeats", type=int, default=2, help="cost: timed epochs per model and mode (the fastest counts)")
    parser.add_argument("--epsilons", default="1,3,8", help="utility: target epsilons (comma-separated)")
    parser.add_argument("--too-small", type=float, default=0.01, help="utility: the last training site's target epsilon in the last run")
    parser.add_argument("--out", type=Path, help="result file")
    args = parser.parse_args()
    rows = cost(args.image_size, args.repeats) if args.kind == "cost" else utility([float(e) for e in args.epsilons.split(",")], args.too_small)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    out = args.out or BENCH / "results" / f"{datetime.now():%Y-%m-%d}-{socket.gethostname()}-dp-{args.kind}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"bench": f"dp-{args.kind}", "date": datetime.now().isoformat(timespec="seconds"), "commit": commit, "machine": {"host": socket.gethostname(), "cpus": __import__("os").cpu_count(), "python": platform.python_version()}, "rows": rows}
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
