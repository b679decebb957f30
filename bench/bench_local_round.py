"""Benchmark: seconds per local training epoch and per evaluation pass on one phantom site.

Run: python bench/bench_local_round.py [--model small] [--image-size 64] [--preset demo]
Prints a figure; it never passes or fails.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from client.data import load_site_data
from client.site import evaluate_split, model_for, train_round
from client.site_config import load_site_config
from models.run_config import RunConfig
from models.task import build_network
from simulation.phantom import make_phantom


def main() -> None:
    """Time loading, one training epoch and one validation pass of the first training site."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="small")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    cfg = RunConfig(model=args.model, image_size=args.image_size, local_epochs=args.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        summary = make_phantom(Path(tmp), args.preset, 0)
        t0 = time.perf_counter()
        data = load_site_data(load_site_config(Path(tmp) / summary.sites[0] / "site.yaml"), cfg.image_size)
        t1 = time.perf_counter()
        state = build_network(cfg).state_dict()
        state, metrics = train_round(data, state, cfg, server_round=1)
        t2 = time.perf_counter()
        evaluate_split(data, model_for(cfg, state), cfg, "val")
        t3 = time.perf_counter()
    n = metrics["num_examples"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, model {args.model}, {args.image_size} px")
    print(f"load+preprocess {len(data.splits['train']) + len(data.splits['val']) + len(data.splits['test'])} images: {t1 - t0:.2f} s")
    print(f"train {args.epochs} epochs x {n} cases: {t2 - t1:.2f} s ({(t2 - t1) / args.epochs:.2f} s/epoch)")
    print(f"evaluate {len(data.splits['val'])} cases: {t3 - t2:.2f} s")


if __name__ == "__main__":
    main()
