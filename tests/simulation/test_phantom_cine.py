"""Tests of the cine phantom (``make-phantom --modality cine``): tiny preset on disk, demo preset without pixels."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import UltrasoundImageStorage, UltrasoundMultiFrameImageStorage
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from client.cine import read_cine
from client.dicom import decode_dicom
from client.images import LUMA, decode_image, read_mask
from client.manifest import read_manifest
from simulation.cli import main
from simulation.phantom import CINE_PRESETS, PhantomSummary, make_phantom
from simulation.phantom.cine_features import KEY_FRAME_FEATURES, LOOP_ONLY_FEATURES, sweep_lesion
from simulation.phantom.cine_render import render_sweep
from simulation.phantom.cine_writer import CINE_MANIFEST_COLUMNS, draw_cine_cohort
from simulation.phantom.features import CLINICAL_COLUMNS
from simulation.phantom.render import SiteGeometry
from simulation.phantom.risk import CLINICAL_TERMS
from simulation.phantom.sweep import SPAN, frame_count, plan_sweep
from simulation.phantom.writer import NOISE_STREAM, site_rng

TINY = CINE_PRESETS["tiny"]


def _files(root: Path) -> dict[str, bytes]:
    """Return every file under ``root`` keyed by its relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _rows(path: Path) -> list[dict[str, str]]:
    """Read a CSV file's rows."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PhantomSummary]:
    """Write the tiny cine phantom with seed 0 once for the module."""
    out = tmp_path_factory.mktemp("cine0")
    return out, make_phantom(out, "tiny", seed=0, modality="cine")


@pytest.fixture(scope="module")
def sweeps(tiny: tuple[Path, PhantomSummary]) -> dict[str, dict[str, str]]:
    """The truth file's sweep rows keyed by case id."""
    return {row["case_id"]: row for row in _rows(tiny[0] / "_truth" / "sweeps.csv")}


def test_manifest_columns_and_storage(tiny: tuple[Path, PhantomSummary]) -> None:
    """Every site has the cine manifest columns; one training site stores multi-frame DICOM, another frame folders."""
    out, summary = tiny
    storage = {}
    for site in summary.sites:
        with open(out / site / "manifest.csv", newline="", encoding="utf-8") as handle:
            assert next(csv.reader(handle)) == list(CINE_MANIFEST_COLUMNS)
        assert (out / site / "site.yaml").is_file()
        cases = read_manifest(out / site / "manifest.csv", required_input="video")
        assert len(cases) == summary.n_cases[site] and all(c.mask is not None for c in cases)
        storage[site] = {Path(row["video"]).suffix for row in _rows(out / site / "manifest.csv")}
    facts = json.loads((out / "_truth" / "phantom.json").read_text())
    assert facts["modality"] == "cine"
    assert storage == {"site_a": {""}, "site_b": {".dcm"}, "site_ext": {""}}
    assert facts["storage"] == {"site_a": "frame_folder", "site_b": "dicom_multiframe", "site_ext": "frame_folder"}


def test_loops_read_with_their_frame_counts_and_frame_times(tiny: tuple[Path, PhantomSummary],
                                                            sweeps: dict[str, dict[str, str]]) -> None:
    """``read_cine`` reads every loop: the truth's frame count (12-20, varying), the scanner's frame size, FrameTime at DICOM."""
    out, summary = tiny
    lo, hi = TINY.frames
    times: dict[str, set[float]] = {}
    for spec in TINY.preset.sites:
        counts = set()
        for row in _rows(out / spec.name / "manifest.csv"):
            cine = read_cine(out / spec.name / row["video"])
            truth = sweeps[row["case_id"]]
            assert cine.frames.shape[0] == int(truth["n_frames"]) and lo <= cine.frames.shape[0] <= hi
            assert cine.frames.shape[1:3] == (spec.scanner.height, spec.scanner.width)
            counts.add(cine.frames.shape[0])
            times.setdefault(spec.name, set()).add(float(truth["frame_time_ms"]))
            if spec.scanner.storage == "dicom":
                assert cine.frame_time_ms == pytest.approx(spec.scanner.frame_time_ms)
                assert cine.region == SiteGeometry.build(spec.scanner, spec.name).fov_box
            else:
                assert cine.frame_time_ms is None
        assert len(counts) >= 3, spec.name
    assert len({next(iter(t)) for t in times.values()}) == len(times) and all(len(t) == 1 for t in times.values())


def test_multiframe_dicom_tags(tiny: tuple[Path, PhantomSummary], sweeps: dict[str, dict[str, str]]) -> None:
    """The loop is US Multi-frame Image Storage with cine timing tags; the still is single-frame US Image Storage."""
    out, _ = tiny
    row = _rows(out / "site_b" / "manifest.csv")[0]
    ds = pydicom.dcmread(out / "site_b" / row["video"])
    assert ds.SOPClassUID == UltrasoundMultiFrameImageStorage == "1.2.840.10008.5.1.4.1.1.3.1"
    assert int(ds.NumberOfFrames) == int(sweeps[row["case_id"]]["n_frames"])
    assert float(ds.FrameTime) == pytest.approx(83.3) and ds.FrameIncrementPointer == pydicom.tag.Tag(0x0018, 0x1063)
    assert int(ds.CineRate) == 12 and ds.Modality == "US" and len(ds.SequenceOfUltrasoundRegions) == 1
    assert int(ds.RepresentativeFrameNumber) == int(sweeps[row["case_id"]]["key_frame"]) + 1
    assert row["case_id"] not in ds.PatientID
    still = pydicom.dcmread(out / "site_b" / row["image"])
    assert still.SOPClassUID == UltrasoundImageStorage and "NumberOfFrames" not in still


def test_frame_folders_hold_frames_in_order(tiny: tuple[Path, PhantomSummary]) -> None:
    """A frame folder holds frame_000.png ... and ``read_cine`` returns them in that order."""
    out, _ = tiny
    for site in ("site_a", "site_ext"):
        row = _rows(out / site / "manifest.csv")[1]
        folder = out / site / row["video"]
        names = sorted(p.name for p in folder.iterdir())
        assert names == [f"frame_{t:03d}.png" for t in range(len(names))]
        frames = read_cine(folder).frames
        for t in (0, len(names) // 2, len(names) - 1):
            assert np.array_equal(frames[t], np.asarray(Image.open(folder / names[t])))
        assert frames.ndim == (4 if site == "site_ext" else 3)


def test_key_frame_image_and_mask_are_the_loops_largest_section(tiny: tuple[Path, PhantomSummary],
                                                                sweeps: dict[str, dict[str, str]]) -> None:
    """The ``image`` is the loop's key frame (read by client/images.py), its mask the key frame's lesion, and the
    key frame is the frame of the largest lesion area in the sweep model, near the lesion's centre plane."""
    out, _ = tiny
    for spec in TINY.preset.sites:
        geometry = SiteGeometry.build(spec.scanner, spec.name)
        cohort = next(c for c in draw_cine_cohort(TINY) if c.spec.name == spec.name)
        for i, row in enumerate(_rows(out / spec.name / "manifest.csv")[:4]):
            frames = read_cine(out / spec.name / row["video"]).frames
            key = int(sweeps[row["case_id"]]["key_frame"])
            image = decode_image(out / spec.name / row["image"]).pixels
            gray = frames[key] if frames.ndim == 3 else frames[key].astype(np.float32) @ LUMA
            assert np.array_equal(image, gray.astype(np.float32))
            mask = read_mask(out / spec.name / row["mask"], image.shape)
            rng = site_rng(TINY.preset, spec, 0, NOISE_STREAM, i)
            sweep = plan_sweep(int(cohort.features["n_calcifications"][i]), geometry.beam_shape,
                               spec.scanner.frame_time_ms, TINY.duration_s, TINY.frames, rng)
            rendered = render_sweep(sweep_lesion(cohort.features, i), geometry, sweep, rng)
            assert np.array_equal(rendered.frames, frames) and rendered.key_frame == key
            assert rendered.areas[key] == rendered.areas.max() == mask.sum() > 0
            step = SPAN / (sweep.n_frames - 1)
            assert abs(sweep.positions[key]) <= np.abs(sweep.positions).min() + step
            assert rendered.areas[0] < rendered.areas[key] and rendered.areas[-1] < rendered.areas[key]


def test_dicom_still_reader_takes_the_key_frame_of_the_loop(tiny: tuple[Path, PhantomSummary]) -> None:
    """client/dicom.py's still path reads a multi-frame loop's representative frame: the key frame."""
    out, _ = tiny
    row = _rows(out / "site_b" / "manifest.csv")[2]
    loop = decode_dicom(out / "site_b" / row["video"], None).pixels
    assert np.array_equal(loop, decode_dicom(out / "site_b" / row["image"], None).pixels)


def test_labels_never_touch_pixels(tiny: tuple[Path, PhantomSummary], tmp_path: Path) -> None:
    """flip_labels flips every label and changes no loop, key frame or mask byte."""
    first, summary = tiny
    make_phantom(tmp_path, "tiny", seed=0, flip_labels=True, modality="cine")
    a, b = _files(first), _files(tmp_path)
    pixels = [k for k in a if any(f"/{d}/" in k for d in ("videos", "images", "masks"))]
    assert len(pixels) > 500 and all(a[k] == b[k] for k in pixels)
    for site in summary.sites:
        labels = [r["label"] for r in _rows(first / site / "manifest.csv")]
        flipped = [r["label"] for r in _rows(tmp_path / site / "manifest.csv")]
        assert flipped == [str(1 - int(v)) for v in labels]


def test_same_seed_same_bytes_through_the_cli(tiny: tuple[Path, PhantomSummary], tmp_path: Path) -> None:
    """``make-phantom --modality cine`` with the same seed writes the same bytes; the image default is unchanged."""
    first, _ = tiny
    assert main(["make-phantom", "--out", str(tmp_path), "--preset", "tiny", "--seed", "0", "--modality", "cine"]) == 0
    a, b = _files(first), _files(tmp_path)
    assert a.keys() == b.keys() and [k for k in a if a[k] != b[k]] == []
    other = draw_cine_cohort("tiny", seed=1)
    assert not np.array_equal(other[0].features["tumor_size_mm"], draw_cine_cohort("tiny")[0].features["tumor_size_mm"])


def _key_design(rows: list[dict[str, str]]) -> np.ndarray:
    """Design matrix of what a key-frame model may use: key-frame features, clinical terms and the site."""
    features = {name: np.array([r[name] for r in rows], dtype=object) for name in (*KEY_FRAME_FEATURES, *CLINICAL_COLUMNS)}
    numeric = {k: v.astype(float) for k, v in features.items() if k != "histologic_type"}
    terms = [term({**numeric, "histologic_type": features["histologic_type"]}) for _, term in CLINICAL_TERMS.values()]
    key = [np.log(numeric["tumor_size_mm"]), numeric["margin_irregularity"], np.log(numeric["aspect_ratio"]),
           numeric["echogenicity"]]
    sites = sorted({r["site"] for r in rows})
    site = [np.array([r["site"] == s for r in rows], float) for s in sites]
    return np.column_stack([*key, *terms, *site])


def _expected_auc(score: np.ndarray, risk: np.ndarray) -> float:
    """The AUC of ``score`` expected over labels drawn from ``risk`` (no label noise)."""
    pos, neg = risk[:, None], (1 - risk)[None, :]
    above = (score[:, None] > score[None, :]) + 0.5 * (score[:, None] == score[None, :])
    np.fill_diagonal(above, 0.0)
    weight = pos * neg
    np.fill_diagonal(weight, 0.0)
    return float((weight * above).sum() / weight.sum())


def test_loop_carries_more_than_the_key_frame(tiny: tuple[Path, PhantomSummary]) -> None:
    """On the truth file, the best linear fit of the true log-odds from what the key frame shows (with the clinical
    columns and the site) ranks cases clearly worse than the true risk; so does a logistic model on the demo cohort."""
    out, _ = tiny
    facts = json.loads((out / "_truth" / "phantom.json").read_text())
    assert facts["key_frame_features"] == list(KEY_FRAME_FEATURES)
    assert facts["loop_only_features"] == list(LOOP_ONLY_FEATURES)
    rows = _rows(out / "_truth" / "true_risk.csv")
    assert set(LOOP_ONLY_FEATURES) <= set(rows[0])
    risk = np.array([float(r["risk"]) for r in rows])
    design = _key_design(rows)
    logit = np.log(risk / (1 - risk))
    fit = design @ np.linalg.lstsq(design, logit, rcond=None)[0]  # the site columns hold the intercepts
    assert _expected_auc(risk, risk) - _expected_auc(fit, risk) > 0.05

    cohorts = draw_cine_cohort("demo", seed=0)
    demo_rows = [{"site": c.spec.name, **{k: str(c.features[k][i]) for k in (*KEY_FRAME_FEATURES, *CLINICAL_COLUMNS)}}
                 for c in cohorts for i in range(len(c.case_ids))]
    labels = np.concatenate([c.labels for c in cohorts])
    true = np.concatenate([c.risk for c in cohorts])
    design = _key_design(demo_rows)
    key_score = LogisticRegression(C=1e6, max_iter=5000).fit(design, labels).decision_function(design)
    assert roc_auc_score(labels, true) - roc_auc_score(labels, key_score) > 0.04


def test_frame_counts_and_sizes_within_bounds() -> None:
    """Demo loops have 16-48 frames at 96-128 px wide, tiny ones 12-20 at 64x80; scanners' frame times differ."""
    for name, (lo, hi), widths in (("demo", (16, 48), (96, 128)), ("tiny", (12, 20), (80, 80))):
        preset = CINE_PRESETS[name]
        assert preset.frames == (lo, hi)
        times = [s.scanner.frame_time_ms for s in preset.preset.sites]
        assert len(set(times)) == len(times)
        for spec in preset.preset.sites:
            assert widths[0] <= spec.scanner.width <= widths[1]
            shortest = round(preset.duration_s[0] * 1000 / spec.scanner.frame_time_ms)
            longest = round(preset.duration_s[1] * 1000 / spec.scanner.frame_time_ms)
            assert lo <= shortest < longest <= hi  # the duration, not the bounds, sets the count
            assert frame_count(preset.duration_s[0], spec.scanner.frame_time_ms, (lo, hi)) == shortest
    demo = CINE_PRESETS["demo"].preset.sites
    assert [s.role for s in demo] == ["train", "train", "train", "external"]
    assert all(100 <= s.mix.n_cases <= 140 for s in demo)
