"""Integration: prepare two public-dataset replicas as natural centers and a third as the external site, then federate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from client.manifest import read_manifest
from simulation.cli import main as simulate_main
from tests.simulation.public.replicas import write_busi, write_qamebi, write_udiat_b

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def public_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """``prepare`` BUSI + UDIAT-B (training centers) and QAMEBI (external), then a 2-round ``run`` without baselines."""
    root = tmp_path_factory.mktemp("public")
    downloads = root / "downloads"
    busi, udiat, qamebi = write_busi(downloads, n=10), write_udiat_b(downloads, n=10), write_qamebi(downloads, n=6)
    sites = root / "sites"
    code = simulate_main([
        "prepare", "--dataset", f"busi={busi}", "--dataset", f"udiat-b={udiat}", "--dataset", f"qamebi={qamebi}",
        "--partition", "center", "--external", "qamebi", "--out", str(sites),
    ])  # fmt: skip
    assert code == 0
    proc = subprocess.run(
        [
            sys.executable, "-m", "simulation.cli", "run", "--sites", str(sites), "--runs-dir", str(root / "runs"),
            "--set", "num-rounds=2", "--set", "local-epochs=1", "--set", "image-size=32", "--set", "baselines=false",
        ],
        capture_output=True, text=True, timeout=600, cwd=root,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return Path(proc.stdout.strip().splitlines()[-1]), sites, downloads


def test_the_report_names_the_endpoint_and_scores_the_federated_model_at_every_site(public_run: tuple[Path, Path, Path]) -> None:
    run_dir, sites, _ = public_run
    prepared = json.loads((sites / "_prepare" / "prepare.json").read_text())["sites"]
    report = json.loads((run_dir / "report.json").read_text())
    assert report["run"]["endpoint"] == {"name": "lesion malignancy", "positive": "malignant", "negative": "benign"}
    assert report["run"]["rounds"] == 2
    assert {s["name"]: s["role"] for s in report["sites"]} == {"busi": "train", "udiat-b": "train", "qamebi": "external"}
    assert {s["name"]: s["n_cases"] for s in report["sites"]} == {name: facts["images"] for name, facts in prepared.items()}
    assert prepared["qamebi"] == {"role": "external", "cases": 12, "images": 12, "positive": 6, "negative": 6, "datasets": {"QAMEBI": 12}, "official_split": False}
    test_rows = {r["site"]: r for r in report["classification"] if r["model"] == "federated" and r["split"] == "test"}
    assert set(test_rows) == {"busi", "udiat-b", "qamebi", "all"}
    assert test_rows["qamebi"]["n"] == 12 and 0.0 <= test_rows["qamebi"]["auc"] <= 1.0
    assert "lesion malignancy (positive: malignant, negative: benign)" in (run_dir / "report.html").read_text()


def test_the_sites_read_the_downloaded_files_in_place(public_run: tuple[Path, Path, Path]) -> None:
    _, sites, downloads = public_run
    cases = read_manifest(sites / "busi" / "manifest.csv")
    assert all(c.image is not None and c.image.is_relative_to(downloads.resolve()) for c in cases)
    merged = [c for c in cases if c.mask is not None and c.mask.is_relative_to(sites / "busi" / "masks")]
    assert sorted(c.case_id for c in merged) == ["busi_benign-195", "busi_benign-4", "busi_malignant-53"]  # the images with _mask_1 (and _mask_2)
