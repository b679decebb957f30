"""Benchmark: DICOM decoding per transfer syntax, and `prepare` on public datasets at their published sizes.

Run: ``python bench/bench_public_data.py [--repeats 20] [--json FILE]``. Figures, not pass/fail tests.

1. One 8-bit 600 x 800 speckled ultrasound frame (a typical B-mode export) written in each transfer
   syntax the site client reads; the median wall time of ``client.images.decode_image`` (header,
   truncation checks, decode, LUTs, luminance) over ``--repeats`` reads, one core.
2. Replicas of BUS-BRA (1,064 patients, 1,875 images) and BUSI (about 650 lesion images)
   at about their published counts (48 x 40 pixels: reading the layout is what is timed, not pixels);
   the wall time of ``axilla-simulate prepare`` by center and by Dirichlet label skew.
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from pydicom.uid import (  # noqa: E402
    DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian, JPEG2000, JPEG2000Lossless,
    JPEGExtended12Bit, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless, RLELossless,
)  # fmt: skip

from client.images import decode_image  # noqa: E402
from simulation.public.partition import PartitionOptions  # noqa: E402
from simulation.public.prepare import prepare  # noqa: E402
from tests.client.dicom_files import jpeg8, jpeg_baseline, native, save  # noqa: E402
from tests.simulation.public.replicas import write_bus_bra, write_busi  # noqa: E402

SHAPE = (600, 800)


def _frame() -> np.ndarray:
    """A speckled B-mode-like frame: Rayleigh speckle over a depth gradient, a dark lesion."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    tissue = 140 * (1 - yy / SHAPE[0] * 0.5) * rng.rayleigh(0.6, SHAPE)
    tissue[(yy - 300) ** 2 / 80**2 + (xx - 400) ** 2 / 120**2 < 1] *= 0.25
    return np.clip(tissue, 0, 255).round()


def _files(folder: Path) -> dict[str, Path]:
    """The frame in every transfer syntax (lossy ones as scanners set them)."""
    frame = _frame()
    out: dict[str, Path] = {}
    for name, syntax in (("explicit VR little endian", ExplicitVRLittleEndian), ("explicit VR big endian", ExplicitVRBigEndian),
                         ("deflated", DeflatedExplicitVRLittleEndian)):  # fmt: skip
        out[name] = save(folder / f"{len(out)}.dcm", native(frame), syntax)
    for name, syntax, kwargs in (("RLE lossless", RLELossless, {}), ("JPEG-LS lossless", JPEGLSLossless, {}),
                                 ("JPEG-LS near-lossless", JPEGLSNearLossless, {"jls_error": 2}),
                                 ("JPEG 2000 lossless", JPEG2000Lossless, {}), ("JPEG 2000", JPEG2000, {"j2k_psnr": [45]})):  # fmt: skip
        ds = native(frame)
        ds.compress(syntax, frame.astype(np.uint8), **kwargs)
        out[name] = save(folder / f"{len(out)}.dcm", ds)
    out["JPEG baseline"] = save(folder / f"{len(out)}.dcm", jpeg_baseline(frame))
    out["JPEG extended 12-bit"] = save(folder / f"{len(out)}.dcm", jpeg8(frame * 16, JPEGExtended12Bit, 12, lossless=False))
    out["JPEG lossless SV1"] = save(folder / f"{len(out)}.dcm", jpeg8(frame, JPEGLosslessSV1, 8, lossless=True, predictor=1))
    return out


def decode_times(repeats: int) -> dict[str, dict[str, float]]:
    """Median and best decode time (ms) and file size (KiB) per transfer syntax."""
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for name, path in _files(Path(tmp)).items():
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                decode_image(path)
                times.append((time.perf_counter() - start) * 1000)
            results[name] = {"median_ms": round(statistics.median(times), 2), "best_ms": round(min(times), 2), "file_kib": round(path.stat().st_size / 1024, 1)}
            print(f"decode {name:26s} {results[name]['median_ms']:7.2f} ms median, {results[name]['file_kib']:7.1f} KiB")
    return results


def prepare_times() -> dict[str, float]:
    """Seconds to prepare BUS-BRA + BUSI replicas at published counts, by center and by Dirichlet skew."""
    with tempfile.TemporaryDirectory() as tmp:
        downloads = Path(tmp) / "downloads"
        specs = [("bus-bra", write_bus_bra(downloads, n=532)), ("busi", write_busi(downloads, n=323))]
        results = {}
        for method in ("center", "dirichlet"):
            start = time.perf_counter()
            plans, record = prepare(specs, PartitionOptions(method, num_sites=5, alpha=0.5, min_cases=20), Path(tmp) / method)
            results[f"{method}_s"] = round(time.perf_counter() - start, 3)
            results[f"{method}_cases"] = sum(s["cases"] for s in record["sites"].values())  # type: ignore[union-attr]
            results[f"{method}_images"] = sum(s["images"] for s in record["sites"].values())  # type: ignore[union-attr]
            print(f"prepare {method}: {results[f'{method}_s']:.2f} s for {results[f'{method}_cases']} cases, {results[f'{method}_images']} images, {len(plans)} sites")
    return results


def main() -> None:
    """Run both parts and print (and optionally write) the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    figures = {"decode_600x800": decode_times(args.repeats), "prepare": prepare_times()}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
