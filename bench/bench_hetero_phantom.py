"""Benchmark: the hetero phantom's generation time, and local-only against pooled training on it.

Writes the preset, loads every site through the client's own pipeline (``load_site_data``: crop,
luminance, resize), trains one small CNN per training site alone and one on all training sites
pooled (a plain PyTorch loop, all of a site's cases, no early stopping), and prints each model's
AUC at the external site next to its Bayes ceiling. A figure, not a pass/fail test.

Run: ``python bench/bench_hetero_phantom.py [--preset hetero] [--size 64] [--epochs 30] [--seeds 2]``.
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from client.data import load_site_data  # noqa: E402
from client.site_config import load_site_config  # noqa: E402
from simulation.phantom import make_phantom  # noqa: E402

Cases = tuple[torch.Tensor, torch.Tensor]


def _site_cases(folder: Path, size: int) -> Cases:
    """All of a site's cases (every split) as (N, 1, S, S) images and (N,) labels, read as the client reads them."""
    data = load_site_data(load_site_config(folder / "site.yaml"), size)
    images = torch.cat([s.images for s in data.splits.values()]).float()
    labels = torch.cat([s.labels for s in data.splits.values()]).float()
    return images, labels


def _cnn() -> nn.Module:
    """A small four-block CNN with one logit."""
    blocks: list[nn.Module] = []
    widths = (1, 16, 32, 64, 64)
    for cin, cout in zip(widths, widths[1:]):
        blocks += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(widths[-1], 1))


def _train(cases: Cases, epochs: int, seed: int) -> nn.Module:
    """Train the CNN on ``cases`` with Adam, batch 32, horizontal flips; return it in eval mode."""
    torch.manual_seed(seed)
    images, labels = cases
    model = _cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    loss_fn = nn.BCEWithLogitsLoss()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(labels), generator=gen).split(32):
            x = images[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            opt.zero_grad()
            loss_fn(model(x).squeeze(1), labels[idx]).backward()
            opt.step()
    return model.eval()


def _auc(model: nn.Module, cases: Cases) -> float:
    """The model's AUC on ``cases``."""
    with torch.no_grad():
        scores = model(cases[0]).squeeze(1).numpy()
    return float(roc_auc_score(cases[1].numpy(), scores))


def main() -> None:
    """Write the preset, train local-only and pooled models, print generation time and external AUCs."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="hetero")
    parser.add_argument("--seed", type=int, default=0, help="phantom seed")
    parser.add_argument("--size", type=int, default=64, help="image size the client preprocesses to")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=2, help="training seeds per model")
    parser.add_argument("--out", type=Path, default=None, help="phantom folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "phantom"
        start = time.perf_counter()
        summary = make_phantom(out, args.preset, args.seed)
        gen_s = time.perf_counter() - start
        print(f"{args.preset}: {sum(summary.n_cases.values())} cases written in {gen_s:.1f} s")
        roles = {s: load_site_config(out / s / "site.yaml").role for s in summary.sites}
        cases = {s: _site_cases(out / s, args.size) for s in summary.sites}
    external = [s for s, r in roles.items() if r == "external"]
    train = [s for s, r in roles.items() if r == "train"]
    pooled = (torch.cat([cases[s][0] for s in train]), torch.cat([cases[s][1] for s in train]))
    results: dict[str, dict[str, list[float]]] = {}
    start = time.perf_counter()
    for name, data in [*((f"local:{s}", cases[s]) for s in train), ("pooled", pooled)]:
        models = [_train(data, args.epochs, seed) for seed in range(args.seeds)]
        results[name] = {ext: [_auc(m, cases[ext]) for m in models] for ext in external}
        cells = "  ".join(f"{ext} {np.mean(v):.3f} ({', '.join(f'{a:.3f}' for a in v)})" for ext, v in results[name].items())
        print(f"{name:26s} n={len(data[1]):4d} pos={int(data[1].sum()):3d}  AUC at {cells}")
    train_s = time.perf_counter() - start
    print("Bayes ceiling: " + ", ".join(f"{s} {summary.bayes_auc[s]:.3f}" for s in summary.sites))
    print(f"training: {train_s:.0f} s ({args.epochs} epochs, {args.seeds} seeds, {args.size} px, one thread)")
    if args.json:
        args.json.write_text(json.dumps({"preset": args.preset, "generation_s": gen_s, "training_s": train_s,
                                         "bayes_auc": summary.bayes_auc, "external_auc": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
