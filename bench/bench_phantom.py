"""Benchmark: phantom cases per second (demo scanners, 1,000 cases, one core, files included).

Run: ``python bench/bench_phantom.py [--cases 1000] [--out DIR]``. A figure, not a pass/fail test.
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulation.phantom.presets import PRESETS, scaled_preset  # noqa: E402
from simulation.phantom.writer import build_phantom  # noqa: E402


def main() -> None:
    """Write about ``--cases`` demo-scanner cases once and print the throughput."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=1000, help="total cases over the four demo sites")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a temporary one)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    preset = scaled_preset(PRESETS["demo"], args.cases)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "phantom"
        start = time.perf_counter()
        summary = build_phantom(out, preset, args.seed)
        seconds = time.perf_counter() - start
    cases = sum(summary.n_cases.values())
    sizes = ", ".join(f"{s.name} {s.mix.n_cases} @ {s.scanner.width}x{s.scanner.height}" for s in preset.sites)
    print(f"phantom: {cases} cases ({sizes})")
    print(f"phantom: {seconds:.1f} s on one core, {cases / seconds:.1f} cases/s (render + PNG/DICOM + truth)")


if __name__ == "__main__":
    main()
