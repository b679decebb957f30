"""Integration: the automatic pipeline (segmenters, fusion, classifier on predicted crops) in Flower's simulation engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from simulation.phantom import make_phantom

pytestmark = pytest.mark.integration


def test_tiny_federated_segmentation_pipeline_with_baselines(tmp_path: Path) -> None:
    sites = tmp_path / "sites"
    make_phantom(sites, "tiny", seed=2)
    proc = subprocess.run(
        [
            sys.executable, "-m", "simulation.cli", "run", "--sites", str(sites), "--runs-dir", str(tmp_path / "runs"),
            "--run-config", str(Path(__file__).parents[2] / "experiments" / "seed000_automatic.toml"),
            "--set", "segmenters=unet,deeplabv3", "--set", "num-rounds=1", "--set", "local-epochs=1",
            "--set", "image-size=32", "--set", "seg-image-size=32", "--set", "grad-cam-cases=1", "--set", "validate-every=0",
        ],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    report = json.loads((run_dir / "report.json").read_text())
    seg = {(r["model"], r["segmenter"], r["site"], r["split"]) for r in report["segmentation"]}
    models = {"federated", "pooled", "local:site_a", "local:site_b"}
    for model in models:
        for segmenter in ("unet", "deeplabv3", "fusion-mean", "fusion-union"):
            for site in ("site_a", "site_b", "site_ext"):
                assert (model, segmenter, site, "test") in seg, (model, segmenter, site)
    assert {r["model"] for r in report["classification"] if r["site"] == "site_ext"} == models
    assert {c["model_b"] for c in report["comparisons"] if c["site"] == "site_ext"} == models - {"federated"}
    for site in ("site_a", "site_b", "site_ext"):
        assert len(list((sites / site / "output" / "grad_cam" / run_dir.name / "federated").glob("*.png"))) == 1
    assert not list(run_dir.rglob("*grad*"))
    assert "Segmentation" in (run_dir / "report.html").read_text()
