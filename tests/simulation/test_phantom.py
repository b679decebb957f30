"""Tests of the phantom multi-hospital cohort (tiny preset on disk, demo preset without pixels)."""

from __future__ import annotations

import csv
import inspect
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import yaml
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage
from sklearn.metrics import roc_auc_score

from simulation.phantom import PRESETS, PhantomSummary, make_phantom
from simulation.phantom.features import lesion_features
from simulation.phantom.render import SiteGeometry, render_case
from simulation.phantom.risk import image_share
from client.site_config import load_site_config
from simulation.phantom.writer import CLINICAL_TYPES, MANIFEST_COLUMNS, draw_cohort, site_rng

SITE_YAML_KEYS = ["site", "role", "data", "compute", "privacy", "output_dir"]


def _files(root: Path) -> dict[str, bytes]:
    """Return every file under ``root`` keyed by its relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _manifest(folder: Path) -> list[dict[str, str]]:
    """Read a site's manifest rows."""
    with open(folder / "manifest.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _image(path: Path) -> np.ndarray:
    """Read a stored image (PNG or DICOM) as an array."""
    if path.suffix == ".dcm":
        return pydicom.dcmread(path).pixel_array
    return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PhantomSummary]:
    """Write the tiny phantom with seed 0 once for the module."""
    out = tmp_path_factory.mktemp("tiny0")
    return out, make_phantom(out, "tiny", seed=0)


def test_same_seed_gives_identical_bytes(tiny: tuple[Path, PhantomSummary], tmp_path: Path) -> None:
    """Same (preset, seed): every file, truth included, is byte-identical."""
    first, _ = tiny
    make_phantom(tmp_path, "tiny", seed=0)
    a, b = _files(first), _files(tmp_path)
    assert a.keys() == b.keys()
    assert len(a) > 3 * 40
    assert [k for k in a if a[k] != b[k]] == []


def test_different_seed_gives_different_images(tiny: tuple[Path, PhantomSummary], tmp_path: Path) -> None:
    """A different seed draws different cases and different pixels."""
    first, _ = tiny
    make_phantom(tmp_path, "tiny", seed=1)
    a, b = _files(first), _files(tmp_path)
    images = [k for k in a if "/images/" in k]
    assert images and all(a[k] != b.get(k) for k in images)
    assert a["_truth/true_risk.csv"] != b["_truth/true_risk.csv"]


def test_flipped_labels_leave_pixels_identical(tiny: tuple[Path, PhantomSummary], tmp_path: Path) -> None:
    """flip_labels flips every label and changes no image or mask byte."""
    first, summary = tiny
    flipped = make_phantom(tmp_path, "tiny", seed=0, flip_labels=True)
    a, b = _files(first), _files(tmp_path)
    pixels = [k for k in a if "/images/" in k or "/masks/" in k]
    assert pixels and all(a[k] == b[k] for k in pixels)
    for site in summary.sites:
        rows_a, rows_b = _manifest(first / site), _manifest(tmp_path / site)
        assert [int(r["label"]) for r in rows_b] == [1 - int(r["label"]) for r in rows_a]
        for ra, rb in zip(rows_a, rows_b):
            assert {k: v for k, v in ra.items() if k != "label"} == {k: v for k, v in rb.items() if k != "label"}
        assert flipped.n_positive[site] == summary.n_cases[site] - summary.n_positive[site]
        assert a[f"{site}/site.yaml"] == b[f"{site}/site.yaml"]


def test_renderer_never_receives_the_label() -> None:
    """The renderer's inputs are lesion features, the site geometry and a noise generator only."""
    assert list(inspect.signature(render_case).parameters) == ["lesion", "geometry", "rng"]
    fields = set(inspect.signature(lesion_features(draw_cohort("tiny")[0].features, 0).__class__).parameters)
    assert not fields & {"label", "risk", "her2", "er", "pr", "ki67", "histologic_grade", "age"}


def test_masks_are_binary_nonempty_and_inside_the_field_of_view(tiny: tuple[Path, PhantomSummary]) -> None:
    """Every mask: 0/255, same size as its image, lesion inside the image and inside the FOV."""
    out, summary = tiny
    for spec in PRESETS["tiny"].sites:
        fov = SiteGeometry.build(spec.scanner, spec.name).fov_mask
        for row in _manifest(out / spec.name):
            mask = np.asarray(Image.open(out / spec.name / row["mask"]))
            image = _image(out / spec.name / row["image"])
            assert mask.dtype == np.uint8 and mask.ndim == 2
            assert set(np.unique(mask)) == {0, 255}
            assert mask.shape == image.shape[:2] == (spec.scanner.height, spec.scanner.width)
            lesion = mask > 0
            assert not (lesion[0].any() or lesion[-1].any() or lesion[:, 0].any() or lesion[:, -1].any())
            assert not (lesion & ~fov).any()
            area = lesion.sum() / fov.sum()
            assert 0.002 < area < 0.5
    assert sum(summary.n_cases.values()) == sum(s.mix.n_cases for s in PRESETS["tiny"].sites)


def test_bayes_ceiling_recomputed_from_truth(tiny: tuple[Path, PhantomSummary]) -> None:
    """bayes_auc.json and the summary equal roc_auc_score(label, risk) per site of true_risk.csv."""
    out, summary = tiny
    truth = out / "_truth"
    with open(truth / "true_risk.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    stored = json.loads((truth / "bayes_auc.json").read_text())
    facts = json.loads((truth / "phantom.json").read_text())
    assert list(stored) == summary.sites
    for site in summary.sites:
        labels = [int(r["label"]) for r in rows if r["site"] == site]
        risk = [float(r["risk"]) for r in rows if r["site"] == site]
        assert len(labels) == summary.n_cases[site] == facts["sites"][site]["n_cases"]
        assert sum(labels) == summary.n_positive[site] == facts["sites"][site]["n_positive"]
        assert roc_auc_score(labels, risk) == pytest.approx(stored[site], abs=1e-12)
        assert summary.bayes_auc[site] == pytest.approx(stored[site], abs=1e-12)
        manifest_labels = [int(r["label"]) for r in _manifest(out / site)]
        assert manifest_labels == labels
    assert facts["preset"] == "tiny" and facts["seed"] == 0


def test_truth_stays_outside_every_site_folder(tiny: tuple[Path, PhantomSummary]) -> None:
    """No site folder holds the truth, a risk column or a risk file."""
    out, summary = tiny
    for site in summary.sites:
        folder = (out / site).resolve()
        assert folder not in (out / "_truth").resolve().parents
        names = [p.name for p in folder.rglob("*")]
        assert not any("risk" in n or "truth" in n for n in names)
        with open(folder / "manifest.csv", newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle))
        assert not any("risk" in column for column in header)


def test_manifest_columns_and_values(tiny: tuple[Path, PhantomSummary]) -> None:
    """The manifest has exactly the contract's columns and plausible values."""
    out, summary = tiny
    all_ids: list[str] = []
    for spec in PRESETS["tiny"].sites:
        with open(out / spec.name / "manifest.csv", newline="", encoding="utf-8") as handle:
            assert next(csv.reader(handle)) == list(MANIFEST_COLUMNS)
        rows = _manifest(out / spec.name)
        assert len(rows) == summary.n_cases[spec.name]
        for row in rows:
            assert row["case_id"].startswith(spec.prefix + "-")
            assert row["label"] in {"0", "1"}
            assert (out / spec.name / row["image"]).is_file() and (out / spec.name / row["mask"]).is_file()
            assert row["mask"].startswith("masks/") and row["mask"].endswith(".png")
            assert all(row[k] in {"0", "1"} for k in ("er", "pr", "her2"))
            assert 0 <= int(row["ki67"]) <= 100
            assert row["histologic_type"] in {"IDC", "ILC", "DCIS", "other"}
            assert row["histologic_grade"] in {"1", "2", "3"}
            assert 18 <= int(row["age"]) <= 95
            assert len(row["tumor_size_mm"].split(".")[1]) == 1 and float(row["tumor_size_mm"]) > 0
            assert row["scanner"] == f"{spec.scanner.manufacturer} {spec.scanner.model}"
        all_ids += [r["case_id"] for r in rows]
    assert len(set(all_ids)) == len(all_ids)


def test_site_yaml_follows_the_contract(tiny: tuple[Path, PhantomSummary]) -> None:
    """site.yaml has the contract's keys, the site's role and a manifest path relative to it."""
    out, summary = tiny
    roles = {s.name: s.role for s in PRESETS["tiny"].sites}
    for site in summary.sites:
        config = yaml.safe_load((out / site / "site.yaml").read_text())
        assert list(config) == SITE_YAML_KEYS
        assert config["site"] == site and config["role"] == roles[site]
        assert config["data"] == {"manifest": "manifest.csv", "crop": "auto", "clinical": CLINICAL_TYPES}
        assert set(CLINICAL_TYPES) == set(MANIFEST_COLUMNS[5:])  # every clinical and reader column declared
        assert load_site_config(out / site / "site.yaml").data.clinical["histologic_type"].levels[0] == "IDC"  # the reference type
        assert config["compute"] == {"device": "auto", "batch_size": 16, "num_workers": 0}
        assert config["privacy"] == {
            "share_case_predictions": False,
            "min_cell_count": 5,
            "dp": {"enabled": False, "target_epsilon": 8.0, "delta": 1.0e-5, "max_grad_norm": 1.0},
        }
        assert config["output_dir"] == "output"
        assert (out / site / config["data"]["manifest"]).is_file()
    assert sorted(roles.values()) == ["external", "train", "train"]


def test_dicom_site_reads_back_the_rendered_pixels(tiny: tuple[Path, PhantomSummary]) -> None:
    """The DICOM site stores US Image Storage files whose pixels equal the rendered image."""
    out, _ = tiny
    preset = PRESETS["tiny"]
    (spec,) = [s for s in preset.sites if s.scanner.storage == "dicom"]
    rows = _manifest(out / spec.name)
    assert all(r["image"].endswith(".dcm") for r in rows)
    uids = set()
    for row in rows:
        ds = pydicom.dcmread(out / spec.name / row["image"])
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.SOPClassUID == UltrasoundImageStorage == ds.file_meta.MediaStorageSOPClassUID
        assert ds.Modality == "US" and ds.PhotometricInterpretation == "MONOCHROME2"
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.SamplesPerPixel) == (8, 8, 7, 1)
        assert ds.PatientID and row["case_id"] not in ds.PatientID
        assert ds.SequenceOfUltrasoundRegions[0].PhysicalDeltaX > 0
        pixels = ds.pixel_array
        assert pixels.dtype == np.uint8 and pixels.shape == (ds.Rows, ds.Columns)
        assert pixels.shape == (spec.scanner.height, spec.scanner.width)
        uids.add(ds.SOPInstanceUID)
    assert len(uids) == len(rows)
    cohort = next(c for c in draw_cohort(preset, 0) if c.spec.name == spec.name)
    geometry = SiteGeometry.build(spec.scanner, spec.name)
    expected = render_case(lesion_features(cohort.features, 0), geometry, site_rng(preset, spec, 0, 3, 0))
    stored = pydicom.dcmread(out / spec.name / rows[0]["image"]).pixel_array
    assert np.array_equal(stored, expected.image)


def test_tinted_site_stores_rgb_and_others_gray(tiny: tuple[Path, PhantomSummary]) -> None:
    """Exactly one site stores RGB PNGs (tinted); PNG sites without tint store 8-bit grayscale."""
    out, _ = tiny
    modes = {}
    for spec in PRESETS["tiny"].sites:
        if spec.scanner.storage == "dicom":
            continue
        rows = _manifest(out / spec.name)
        modes[spec.name] = {Image.open(out / spec.name / r["image"]).mode for r in rows}
        assert all(Image.open(out / spec.name / r["mask"]).mode == "L" for r in rows)
    assert sorted(map(sorted, modes.values())) == [["L"], ["RGB"]]
    rgb_site = next(s for s, m in modes.items() if m == {"RGB"})
    image = np.asarray(Image.open(next((out / rgb_site / "images").iterdir())))
    assert not np.array_equal(image[..., 0], image[..., 2])


def test_rewrite_replaces_site_folders(tmp_path: Path) -> None:
    """Writing again into the same folder removes stale files of the previous phantom."""
    make_phantom(tmp_path, "tiny", seed=0)
    stale = tmp_path / "site_a" / "images" / "stale.png"
    stale.write_bytes(b"x")
    make_phantom(tmp_path, "tiny", seed=2)
    assert not stale.exists()
    assert json.loads((tmp_path / "_truth" / "phantom.json").read_text())["seed"] == 2
    with pytest.raises(ValueError):
        make_phantom(tmp_path, "no-such-preset")


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_demo_preset_structure(seed: int) -> None:
    """demo: 3 training + 1 external site, 80-200 cases, prevalence 30-55%, Bayes AUC 0.80-0.92."""
    cohorts = draw_cohort("demo", seed)
    assert sorted(c.spec.role for c in cohorts) == ["external", "train", "train", "train"]
    assert [c.spec.name for c in cohorts] == ["hospital_a", "hospital_b", "hospital_c", "hospital_ext"]
    assert len({c.spec.mix.prevalence for c in cohorts}) == len(cohorts)
    for c in cohorts:
        assert 80 <= len(c.case_ids) <= 200
        assert 0.30 <= c.labels.mean() <= 0.55
        assert 0.80 <= c.bayes_auc <= 0.92
        assert abs(c.risk.mean() - c.spec.mix.prevalence) < 1e-6
        assert 0.70 <= image_share(c.features) <= 0.90
    storage = [c.spec.scanner.storage for c in cohorts]
    assert storage.count("dicom") == 1 and storage.count("png_rgb") == 1
    assert len({(c.spec.scanner.height, c.spec.scanner.width) for c in cohorts}) == len(cohorts)
    assert {c.spec.scanner.geometry for c in cohorts} == {"linear", "sector"}


def test_demo_clinical_marginals() -> None:
    """Pooled demo marginals follow the seed studies (age, size, receptors, Ki-67, type, grade)."""
    cohorts = draw_cohort("demo", 0)
    f = {k: np.concatenate([c.features[k] for c in cohorts]) for k in cohorts[0].features}
    assert 47 <= f["age"].mean() <= 55 and 7 <= f["age"].std() <= 13
    assert 15 <= np.median(f["tumor_size_mm"]) <= 30 and np.mean(f["tumor_size_mm"]) > np.median(f["tumor_size_mm"])
    assert 0.6 <= f["er"].mean() <= 0.8 and 0.5 <= f["pr"].mean() <= 0.7 and 0.15 <= f["her2"].mean() <= 0.3
    assert 15 <= np.median(f["ki67"]) <= 35
    assert np.mean(f["histologic_type"] == "IDC") > 0.6
    assert np.argmax(np.bincount(f["histologic_grade"])) == 2
    her2 = f["her2"] == 1
    assert f["histologic_grade"][her2].mean() > f["histologic_grade"][~her2].mean()


def test_make_phantom_with_dp_epsilon_makes_every_training_site_require_dp(tmp_path: Path) -> None:
    from client.site_config import load_site_config
    from simulation.cli import main

    assert main(["make-phantom", "--out", str(tmp_path / "p"), "--preset", "tiny", "--dp-epsilon", "3"]) == 0
    configs = {c.site: c for c in (load_site_config(p) for p in sorted((tmp_path / "p").glob("*/site.yaml")))}
    assert {name for name, c in configs.items() if c.privacy.dp.enabled} == {name for name, c in configs.items() if c.trains} != set()
    assert all(c.privacy.dp.target_epsilon == 3.0 and c.privacy.dp.delta == 1e-5 for c in configs.values() if c.trains)


def test_readers_read_what_the_image_shows_with_their_own_error() -> None:
    """Reader scores and calls follow the image terms' log-odds (never the label: the flipped-label test keeps them)."""
    from scipy.stats import spearmanr

    from simulation.phantom.risk import linear_predictor, reader_reads

    features = draw_cohort("demo")[0].features
    score, call = reader_reads(features, np.random.default_rng(0))
    image = linear_predictor(features, "image")
    assert set(score) == {2, 3, 4, 5} and set(call) == {0, 1}
    assert 0.5 < spearmanr(score, image)[0] < 0.95 and 0.5 < spearmanr(call, image)[0] < 0.95  # informative, not perfect
    assert 0.1 < call.mean() < 0.6
