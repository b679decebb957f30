"""Benchmark: seconds per local segmentation epoch for each segmenter, and to cut one site's lesion crops.

Run: python bench/bench_segmentation.py [--seg-image-size 64] [--image-size 64] [--preset demo] [--epochs 2]
Prints figures; it never passes or fails.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from client.data import load_site_data
from client.site import evaluate_split, fused_segmenter, model_for, stage_data, train_round
from client.site_config import load_site_config
from models.run_config import SEGMENTER_NAMES, RunConfig
from models.task import build_network
from simulation.phantom import make_phantom


def main() -> None:
    """Time each segmenter's local epochs and validation, then the union fusion's crops of the whole site."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seg-image-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    cfg = RunConfig(seg_image_size=args.seg_image_size, image_size=args.image_size, local_epochs=args.epochs, segmenters=",".join(SEGMENTER_NAMES))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, segmenters at {args.seg_image_size} px")
    with tempfile.TemporaryDirectory() as tmp:
        summary = make_phantom(Path(tmp), args.preset, 0)
        config = load_site_config(Path(tmp) / summary.sites[0] / "site.yaml")
        t0 = time.perf_counter()
        data = load_site_data(config, cfg.seg_image_size)
        print(f"load+preprocess images and masks: {time.perf_counter() - t0:.2f} s")
        states = {}
        for name in SEGMENTER_NAMES:
            seg_cfg = cfg.for_segmenter(name)
            state = build_network(seg_cfg).state_dict()
            t1 = time.perf_counter()
            states[name], metrics = train_round(data, state, seg_cfg, server_round=1)
            t2 = time.perf_counter()
            dice = evaluate_split(data, model_for(seg_cfg, states[name]), seg_cfg, "val")["seg_dice"]
            t3 = time.perf_counter()
            print(f"{name:14s} train {(t2 - t1) / args.epochs:.2f} s/epoch x {metrics['num_examples']} cases, validate {t3 - t2:.2f} s (Dice {dice:.3f})")
        crops_cfg = cfg.replace(lesion_crop="predicted")
        fused_segmenter(crops_cfg, states, "union")  # built once outside the timing, as the site does per message
        t4 = time.perf_counter()
        crops = stage_data(config, crops_cfg, states)
        n = sum(len(s) for s in crops.splits.values())
        print(f"predicted lesion crops of {n} images: {time.perf_counter() - t4:.2f} s ({sum(crops.crops_without_lesion.values())} without a lesion)")


if __name__ == "__main__":
    main()
