"""Tests of the multimodal phantom (``make-phantom --modality multimodal``) on the tiny preset."""

from __future__ import annotations

import csv
import inspect
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from scipy import ndimage

from client.images import decode_image
from client.manifest import read_manifest
from simulation.cli import main
from simulation.phantom import make_phantom
from simulation.phantom.mammo_dicom import MAMMO_SOP_CLASS
from simulation.phantom.mammo_render import render_mammograms
from simulation.phantom.multimodal_features import COMBINATIONS, MULTIMODAL_COLUMNS, BreastFeatures, TumourBiology
from simulation.phantom.multimodal_presets import MULTIMODAL_SITES, MULTIMODAL_SIZES
from simulation.phantom.multimodal_writer import MULTIMODAL_MANIFEST_COLUMNS
from simulation.phantom.pathology_render import render_micrograph
from tests.simulation.test_phantom_cine import _files, _rows

SITES = MULTIMODAL_SITES["tiny"]

SIZES = MULTIMODAL_SIZES["tiny"]
EXTRA = ("pathology", "mammo_cc", "mammo_mlo", "mammo_cc_mask", "mammo_mlo_mask")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Write the tiny multimodal phantom with seed 0 once for the module, through the command line."""
    out = tmp_path_factory.mktemp("mm0") / "p"
    assert main(["make-phantom", "--out", str(out), "--preset", "tiny", "--modality", "multimodal"]) == 0
    return out


@pytest.fixture(scope="module")
def flipped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Write the same phantom with every label flipped."""
    out = tmp_path_factory.mktemp("mm0flip")
    make_phantom(out, "tiny", seed=0, flip_labels=True, modality="multimodal")
    return out


def test_manifest_columns_files_and_the_site_without_pathology(tiny: Path) -> None:
    """Every site: the multimodal columns in order, every named file present; site_b's pathology column empty."""
    for site, mm in SITES.items():
        with open(tiny / site / "manifest.csv", newline="", encoding="utf-8") as handle:
            assert next(csv.reader(handle)) == list(MULTIMODAL_MANIFEST_COLUMNS)
        rows = _rows(tiny / site / "manifest.csv")
        assert len(read_manifest(tiny / site / "manifest.csv", required_input="image")) == len(rows)
        for row in rows:
            assert all((tiny / site / row[c]).is_file() for c in ("image", "mask", *EXTRA[1:]))
            if mm.pathology:
                micrograph = Image.open(tiny / site / row["pathology"])
                assert micrograph.mode == "RGB" and micrograph.size == (SIZES.micrograph, SIZES.micrograph)
            else:
                assert row["pathology"] == ""
        assert (tiny / site / "pathology").is_dir() == mm.pathology
    assert [s for s, mm in SITES.items() if not mm.pathology] == ["site_b"]


def test_ultrasound_and_clinical_columns_equal_the_image_phantom(tiny: Path, tmp_path: Path) -> None:
    """Stills, masks, labels, clinical and reader columns and site.yaml are the image phantom's of the same seed."""
    make_phantom(tmp_path, "tiny", seed=0)
    image, multi = _files(tmp_path), _files(tiny)
    same = [k for k in image if "/images/" in k or "/masks/" in k or k.endswith("site.yaml")]
    assert same and all(image[k] == multi[k] for k in same)
    for site in SITES:
        rows_i, rows_m = _rows(tmp_path / site / "manifest.csv"), _rows(tiny / site / "manifest.csv")
        assert [{k: v for k, v in r.items() if k not in EXTRA} for r in rows_m] == rows_i


def test_storage_by_site(tiny: Path) -> None:
    """site_a 16-bit PNG, site_b MONOCHROME1 DICOM (12 bits stored, laterality and view set), site_ext 8-bit PNG."""
    for site, mode in (("site_a", "I;16"), ("site_ext", "L")):
        row = _rows(tiny / site / "manifest.csv")[0]
        for view in ("mammo_cc", "mammo_mlo"):
            image = Image.open(tiny / site / row[view])
            assert image.mode == mode and image.size[::-1] == SIZES.mammo
            assert decode_image(tiny / site / row[view]).pixels.shape == SIZES.mammo
    rows = _rows(tiny / "site_b" / "manifest.csv")
    for row in rows:
        for view, position in (("mammo_cc", "CC"), ("mammo_mlo", "MLO")):
            ds = pydicom.dcmread(tiny / "site_b" / row[view])
            assert ds.SOPClassUID == MAMMO_SOP_CLASS == ds.file_meta.MediaStorageSOPClassUID and ds.Modality == "MG"
            assert ds.PhotometricInterpretation == "MONOCHROME1"
            assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (16, 12, 11)
            assert ds.ViewPosition == position and ds.ImageLaterality in ("L", "R")
            assert (ds.Rows, ds.Columns) == SIZES.mammo and ds.pixel_array.max() <= 4095
    assert {pydicom.dcmread(tiny / "site_b" / r["mammo_cc"]).ImageLaterality for r in rows} == {"L", "R"}


def test_monochrome1_mass_is_brighter_after_inversion_and_masks_cover_it(tiny: Path) -> None:
    """Through ``decode_image``, every site's mass (its mask) is brighter than the tissue round it; masks have the view's shape."""
    for site in SITES:
        for row in _rows(tiny / site / "manifest.csv"):
            for view in ("mammo_cc", "mammo_mlo"):
                pixels = decode_image(tiny / site / row[view]).pixels
                mask = np.asarray(Image.open(tiny / site / row[f"{view}_mask"]))
                assert mask.shape == pixels.shape == SIZES.mammo and set(np.unique(mask)) <= {0, 255}
                mass = mask > 0
                assert mass.sum() >= 3
                ring = ndimage.binary_dilation(mass, iterations=3) & ~ndimage.binary_dilation(mass, iterations=1)
                assert pixels[mass].mean() > pixels[ring].mean()


def test_mass_area_follows_tumour_size(tiny: Path) -> None:
    """The mask's area grows with the tumour size (the same mass in both views)."""
    for site in SITES:
        rows = _rows(tiny / site / "manifest.csv")
        size = np.array([float(r["tumor_size_mm"]) for r in rows])
        cc = np.array([(np.asarray(Image.open(tiny / site / r["mammo_cc_mask"])) > 0).sum() for r in rows])
        mlo = np.array([(np.asarray(Image.open(tiny / site / r["mammo_mlo_mask"])) > 0).sum() for r in rows])
        assert np.corrcoef(size**2, cc)[0, 1] > 0.8 and np.corrcoef(cc, mlo)[0, 1] > 0.8


def test_flipped_labels_leave_every_pixel_identical(tiny: Path, flipped: Path) -> None:
    """flip_labels flips every label; micrographs, mammograms, their masks and stills are byte-identical (and so deterministic)."""
    a, b = _files(tiny), _files(flipped)
    assert a.keys() == b.keys()
    pixels = [k for k in a if not k.endswith((".csv", ".json"))]
    assert any("/pathology/" in k for k in pixels) and any("/mammo/" in k for k in pixels)
    assert [k for k in pixels if a[k] != b[k]] == []
    for site in SITES:
        rows_a, rows_b = _rows(tiny / site / "manifest.csv"), _rows(flipped / site / "manifest.csv")
        assert [int(r["label"]) for r in rows_b] == [1 - int(r["label"]) for r in rows_a]
        assert [{k: v for k, v in r.items() if k != "label"} for r in rows_a] == [
            {k: v for k, v in r.items() if k != "label"} for r in rows_b]


def test_same_seed_gives_identical_bytes(tiny: Path, tmp_path: Path) -> None:
    """Same (preset, seed): every file, truth included, is byte-identical."""
    make_phantom(tmp_path / "again", "tiny", seed=0, modality="multimodal")
    a, b = _files(tiny), _files(tmp_path / "again")
    assert a.keys() == b.keys() and [k for k in a if a[k] != b[k]] == []


def test_renderers_never_receive_the_label() -> None:
    """The renderers' inputs are the case's visible features, a stain or a shape, and a noise generator."""
    assert list(inspect.signature(render_micrograph).parameters) == ["biology", "stain", "size", "rng"]
    assert list(inspect.signature(render_mammograms).parameters) == ["breast", "shape", "rng"]
    for kind in (TumourBiology, BreastFeatures):
        assert not set(inspect.signature(kind).parameters) & {"label", "risk", "linear_predictor"}


def test_truth_holds_every_modality_ceiling(tiny: Path) -> None:
    """modality_auc.json: every site and combination, 'all' equal to the Bayes AUC; the truth's facts and columns."""
    truth = tiny / "_truth"
    aucs = json.loads((truth / "modality_auc.json").read_text())
    bayes = json.loads((truth / "bayes_auc.json").read_text())
    facts = json.loads((truth / "phantom.json").read_text())
    assert list(aucs) == list(SITES) == list(bayes)
    for site, row in aucs.items():
        assert list(row) == list(COMBINATIONS)
        assert row["all"] == pytest.approx(bayes[site], abs=1e-9)
        assert all(0.5 < v < 1.0 for v in row.values())
    assert facts["modality"] == "multimodal" and facts["pathology_sites"] == ["site_a", "site_ext"]
    assert facts["mammo_storage"] == {"site_a": "png16", "site_b": "dicom_mono1", "site_ext": "png8"}
    assert set(facts["stain"]) == {"site_a", "site_ext"} and facts["stain"]["site_a"] != facts["stain"]["site_ext"]
    with open(truth / "true_risk.csv", newline="", encoding="utf-8") as handle:
        assert next(csv.reader(handle))[-len(MULTIMODAL_COLUMNS):] == list(MULTIMODAL_COLUMNS)
