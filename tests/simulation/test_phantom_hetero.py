"""The heterogeneous phantom preset: sites, label and quantity skew, the outlier scanner, truth, flipped labels, CLI."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from client.cli import main as client_main
from simulation.cli import PRESET_NAMES
from simulation.cli import main as simulate_main
from simulation.phantom import PRESETS, make_phantom
from simulation.phantom.features import lesion_features
from simulation.phantom.hetero_presets import OUTLIER, scanner_shift
from simulation.phantom.presets import Scanner
from simulation.phantom.render import SiteGeometry, render_case
from simulation.phantom.writer import draw_cohort

TRAIN_SITES = 7


def _manifest(folder: Path) -> list[dict[str, str]]:
    """Read a site's manifest rows."""
    with open(folder / "manifest.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _pixels(root: Path) -> dict[str, bytes]:
    """Every image and mask file under ``root``, keyed by its relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.parent.name in ("images", "masks")}


@pytest.fixture(scope="module")
def hetero_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Write ``hetero-tiny`` with seed 0 once for the module, through the CLI."""
    out = tmp_path_factory.mktemp("hetero_tiny")
    assert simulate_main(["make-phantom", "--out", str(out), "--preset", "hetero-tiny"]) == 0
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hetero_has_seven_small_skewed_training_sites_and_one_external(seed: int) -> None:
    """7 training sites of 40-120 cases (~3x apart, as many as demo's in all), prevalence 15-60%, one external site."""
    cohorts = draw_cohort("hetero", seed)
    train = [c for c in cohorts if c.spec.role == "train"]
    assert [c.spec.role for c in cohorts].count("external") == 1 and len(train) == TRAIN_SITES
    assert OUTLIER in [c.spec.name for c in train]
    assert len({c.spec.name for c in cohorts}) == len({c.spec.prefix for c in cohorts}) == len(cohorts)
    counts = [len(c.case_ids) for c in train]
    assert min(counts) == 40 and max(counts) == 120
    demo_train = sum(s.mix.n_cases for s in PRESETS["demo"].sites if s.role == "train")
    assert abs(sum(counts) - demo_train) <= 0.1 * demo_train
    targets = [c.spec.mix.prevalence for c in train]
    assert min(targets) == 0.15 and max(targets) == 0.60
    observed = [float(c.labels.mean()) for c in train]
    assert min(observed) < 0.25 and max(observed) > 0.45
    for c in cohorts:
        assert abs(c.risk.mean() - c.spec.mix.prevalence) < 1e-6
        assert 0.70 <= c.bayes_auc <= 0.98


def test_the_outlier_scanner_is_the_most_shifted_on_every_knob() -> None:
    """hospital_outlier is strictly farthest from nominal on every knob; the other sites differ among themselves too."""
    shifts = {s.name: scanner_shift(s.scanner) for s in PRESETS["hetero"].sites}
    for knob in shifts[OUTLIER]:
        others = max(v[knob] for name, v in shifts.items() if name != OUTLIER)
        assert shifts[OUTLIER][knob] > others, knob
    scanners = [s.scanner for s in PRESETS["hetero"].sites]
    assert len({s.gain for s in scanners}) == len({(s.height, s.width) for s in scanners}) == len(scanners)
    assert {s.storage for s in scanners} == {"png", "png_rgb", "dicom"}
    assert sum(s.tint is not None for s in scanners) >= 3 and sum(s.resolution < 1 for s in scanners) >= 3
    assert sum(s.zoom != 1 for s in scanners) >= 5 and {s.geometry for s in scanners} == {"linear", "sector"}


def test_hetero_tiny_is_hetero_at_test_size() -> None:
    """hetero-tiny: the same sites, roles and scanner knobs, small images and 20-40 cases per site."""
    full, tiny = PRESETS["hetero"].sites, PRESETS["hetero-tiny"].sites
    assert [(s.name, s.role) for s in tiny] == [(s.name, s.role) for s in full]
    for small, big in zip(tiny, full):
        assert 20 <= small.mix.n_cases <= 40 and small.scanner.width <= 170
        knobs = ("gain", "dynamic_range_db", "tint", "zoom", "resolution", "speckle_contrast", "storage")
        assert all(getattr(small.scanner, k) == getattr(big.scanner, k) for k in knobs)
    assert set(PRESET_NAMES) == set(PRESETS)


def _scanner(**knobs: object) -> Scanner:
    """A small nominal linear scanner with ``knobs`` changed."""
    base = Scanner("Acme", "Sono", "L1", 10.0, 120, 160, "linear", 48.0, 40.0, grain_axial_px=0.9, grain_lateral_px=1.8,
                   gain=0.7, dynamic_range_db=60.0, attenuation=0.7, blur_px=0.5, ui_text=False, ruler=False)
    return replace(base, **knobs)  # type: ignore[arg-type]


def _render(scanner: Scanner) -> tuple[np.ndarray, np.ndarray]:
    """Render case 0 of the tiny preset's first site on ``scanner`` with a fixed noise seed."""
    lesion = lesion_features(draw_cohort("tiny")[0].features, 0)
    rendered = render_case(lesion, SiteGeometry.build(scanner, "knobs"), np.random.default_rng(5))
    return rendered.image.astype(float), rendered.mask > 0


def test_zoom_resolution_and_speckle_knobs_do_what_they_say() -> None:
    """zoom scales the lesion's area by zoom^2; resolution < 1 smooths the image; more speckle contrast, more spread."""
    image, mask = _render(_scanner())
    _, zoomed = _render(_scanner(zoom=0.7))
    assert zoomed.sum() / mask.sum() == pytest.approx(0.49, rel=0.15)
    coarse, coarse_mask = _render(_scanner(resolution=0.4))
    assert (coarse_mask == mask).all()  # the mask is the lesion's, not the blurred display's
    detail = lambda a: float(np.abs(np.diff(a, axis=1)).mean())  # noqa: E731
    assert detail(coarse) < 0.6 * detail(image)
    grainy, _ = _render(_scanner(speckle_contrast=1.5))
    assert detail(grainy) > 1.2 * detail(image)


def test_truth_files_hold_the_bayes_ceilings_and_the_scanner_shifts(hetero_tiny: Path) -> None:
    """_truth/ as for demo: per-case risk, per-site Bayes AUC recomputable from it, facts with each site's scanner shift."""
    truth = hetero_tiny / "_truth"
    with open(truth / "true_risk.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    stored = json.loads((truth / "bayes_auc.json").read_text())
    facts = json.loads((truth / "phantom.json").read_text())
    names = [s.name for s in PRESETS["hetero-tiny"].sites]
    assert list(stored) == list(facts["sites"]) == names and facts["preset"] == "hetero-tiny"
    for site in names:
        labels = [int(r["label"]) for r in rows if r["site"] == site]
        risk = [float(r["risk"]) for r in rows if r["site"] == site]
        assert roc_auc_score(labels, risk) == pytest.approx(stored[site], abs=1e-12)
        assert [int(r["label"]) for r in _manifest(hetero_tiny / site)] == labels
        assert not (hetero_tiny / site / "true_risk.csv").exists()
    shifts = facts["scanner_shift"]
    assert max(shifts, key=lambda name: shifts[name]["tint"]) == OUTLIER


def test_flipped_labels_leave_hetero_pixels_identical(hetero_tiny: Path, tmp_path: Path) -> None:
    """flip_labels flips every hetero-tiny label and changes no image or mask byte."""
    make_phantom(tmp_path, "hetero-tiny", seed=0, flip_labels=True)
    a, b = _pixels(hetero_tiny), _pixels(tmp_path)
    assert len(a) == 2 * sum(s.mix.n_cases for s in PRESETS["hetero-tiny"].sites) and a == b
    for site in PRESETS["hetero-tiny"].sites:
        labels = [int(r["label"]) for r in _manifest(hetero_tiny / site.name)]
        assert [int(r["label"]) for r in _manifest(tmp_path / site.name)] == [1 - y for y in labels]


def test_every_hetero_site_passes_the_client_check(hetero_tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every site folder the CLI wrote is accepted by ``axilla-client --check``; tinted sites store RGB, others gray."""
    for site in PRESETS["hetero-tiny"].sites:
        assert client_main(["--site", str(hetero_tiny / site.name / "site.yaml"), "--check", "--image-size", "64"]) == 0
        out = capsys.readouterr().out
        assert f"{site.scanner.manufacturer} {site.scanner.model}" in out and "UNREADABLE" not in out
        first = _manifest(hetero_tiny / site.name)[0]["image"]
        if site.scanner.storage != "dicom":
            array = np.asarray(Image.open(hetero_tiny / site.name / first))
            assert array.ndim == (3 if site.scanner.tint is not None else 2)


def test_hetero_is_for_the_image_modality_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """cine and multimodal refuse the hetero presets with a message, not a traceback."""
    for modality in ("cine", "multimodal"):
        assert simulate_main(["make-phantom", "--out", str(tmp_path), "--preset", "hetero-tiny", "--modality", modality]) == 2
        assert "hetero-tiny" in capsys.readouterr().err
