"""Benchmark: write the multimodal phantom, time it, and check that each modality's pixels carry signal.

Run: ``python bench/bench_multimodal_phantom.py [--preset demo] [--seed 0] [--out DIR]``. Prints the
write time, the truth's per-modality ceilings (``_truth/modality_auc.json``) and the AUC against the
labels of simple hand-crafted pixel features: micrograph haematoxylin darkness, nuclear area and
dark-clump (mitosis-like) area; mammogram mass area and bright-dot count; ultrasound lesion area;
and of 5-fold cross-validated logistic regressions on them per modality and fused. A figure, not a test.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from client.images import decode_image, read_raster  # noqa: E402
from client.manifest import read_manifest  # noqa: E402
from client.stain import RGB_FROM_HED  # noqa: E402
from simulation.phantom import make_phantom  # noqa: E402

_HE = np.linalg.pinv((RGB_FROM_HED[:2] / np.linalg.norm(RGB_FROM_HED[:2], axis=1, keepdims=True)).T)  # (2, 3)


def pathology_features(path: Path) -> list[float]:
    """Mean haematoxylin concentration, nuclear area share and dark-clump area share of a micrograph."""
    rgb = read_raster(path).astype(np.float64)
    od = -np.log((rgb + 1.0) / 256.0)
    h = (od @ _HE.T)[..., 0]
    nuclei = h > 0.55
    return [float(h.mean()), float(nuclei.mean()), float((h > 1.4).mean()), float(ndimage.label(nuclei)[1])]


def mammo_features(image: Path, mask: Path) -> list[float]:
    """Mass area (px) from the mask and the count of bright dots (white top-hat) in the view."""
    pixels = decode_image(image).pixels
    pixels = pixels / max(float(pixels.max()), 1e-6)
    dots = pixels - ndimage.grey_opening(pixels, size=(3, 3)) > 0.12
    return [float((read_raster(mask) > 0).sum()), float(ndimage.label(dots)[1])]


def site_table(folder: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Return a site's labels and its feature blocks (empty pathology block where the site has none)."""
    cases = read_manifest(folder / "manifest.csv", required_input="image")
    with open(folder / "manifest.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    labels = np.array([c.label for c in cases])
    blocks: dict[str, list[list[float]]] = {"pathology": [], "mammography": [], "ultrasound": []}
    for row, case in zip(rows, cases):
        if row["pathology"]:
            blocks["pathology"].append(pathology_features(folder / row["pathology"]))
        cc = mammo_features(folder / row["mammo_cc"], folder / row["mammo_cc_mask"])
        mlo = mammo_features(folder / row["mammo_mlo"], folder / row["mammo_mlo_mask"])
        blocks["mammography"].append([np.sqrt(cc[0] + mlo[0]), cc[1] + mlo[1]])
        blocks["ultrasound"].append([float(np.sqrt((read_raster(case.mask) > 0).sum()))] if case.mask else [0.0])
    return labels, {k: np.array(v) for k, v in blocks.items() if v}


def cv_auc(x: np.ndarray, y: np.ndarray) -> float:
    """5-fold cross-validated AUC of a standardised logistic regression on ``x``."""
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return float(roc_auc_score(y, cross_val_predict(model, x, y, cv=5, method="predict_proba")[:, 1]))


def main() -> None:
    """Write the phantom, then print the timing, the ceilings and the pixel features' AUCs."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "mm"
        start = time.perf_counter()
        summary = make_phantom(out, args.preset, args.seed, modality="multimodal")
        print(f"multimodal phantom {args.preset}: {sum(summary.n_cases.values())} cases in {time.perf_counter() - start:.1f} s")
        ceilings = json.loads((out / "_truth" / "modality_auc.json").read_text())
        pooled: dict[str, list[np.ndarray]] = {}
        for site in summary.sites:
            print(f"{site} ceilings: " + ", ".join(f"{k} {v:.3f}" for k, v in ceilings[site].items()))
            y, blocks = site_table(out / site)
            pooled.setdefault("y", []).append(y)
            for name, block in blocks.items():
                aucs = ", ".join(f"{roc_auc_score(y, block[:, j]):.3f}" for j in range(block.shape[1]))
                print(f"{site} {name} feature AUCs: {aucs}; 5-fold logistic AUC {cv_auc(block, y):.3f}")
            if "pathology" in blocks:
                print(f"{site} ultrasound+pathology 5-fold logistic AUC "
                      f"{cv_auc(np.hstack([blocks['ultrasound'], blocks['pathology']]), y):.3f}")
            print(f"{site} all imaging 5-fold logistic AUC {cv_auc(np.hstack(list(blocks.values())), y):.3f}")


if __name__ == "__main__":
    main()
