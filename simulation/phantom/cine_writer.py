"""The cine phantom: every case a probe sweep through its lesion (``make-phantom --modality cine``).

Each case is a loop of F frames (``sweep.py``, ``cine_render.py``): the imaging plane moves through
the lesion, whose cross-section grows from absent to its largest (the key frame) and shrinks
again, with slow probe drift and gradually decorrelating speckle. A sweep lasts 1.0-1.6 s (demo) or
1.0-1.3 s (tiny), so scanners of different frame times give different frame counts: demo 16-48
frames (FrameTime 33.3, 50, 40, 45 ms), tiny 12-20 (66.7, 83.3, 75 ms). The key frame shows the
lesion's size, outline, shape and echogenicity; the posterior effect, the calcification cluster, a
spiculated pole and a satellite nodule show only on frames away from it, and the outcome model
(``cine_features.py``) weighs them all, so a loop carries more than its key frame.

Storage: the DICOM sites (demo hospital_b and hospital_ext, tiny site_b) write each loop as an
Ultrasound Multi-frame Image Storage file and the key frame as a single-frame US image; the others
write a folder of frames ``frame_000.png``... (RGB at the tinted site) and the key frame as a PNG.
``manifest.csv``: case_id, label, video, image (the key frame), mask (the key frame's lesion),
scanner, the clinical columns and the readers' reads. The truth folder, outside the sites, holds the
true risk with every feature, each loop's frames, frame time and key frame (``sweeps.csv``), and in
``phantom.json`` the features the key frame shows and those only the rest of the loop shows.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from simulation.phantom.cine_dicom import write_cine_dicom
from simulation.phantom.cine_features import (
    KEY_FRAME_FEATURES, KEY_FRAME_TERMS, LOOP_ONLY_FEATURES, LOOP_ONLY_TERMS, SWEEP_COLUMNS, draw_sweep_features,
    sweep_lesion, sweep_logodds, sweep_true_risk,
)
from simulation.phantom.cine_presets import CINE_PRESETS, CinePreset
from simulation.phantom.cine_render import RenderedCine, render_sweep
from simulation.phantom.dicom import write_dicom
from simulation.phantom.features import FEATURE_COLUMNS, draw_features
from simulation.phantom.render import SiteGeometry
from simulation.phantom.risk import bayes_auc, draw_labels, reader_reads
from simulation.phantom.sweep import Sweep, plan_sweep
from simulation.phantom.writer import (
    FEATURE_STREAM, LABEL_STREAM, NOISE_STREAM, READER_STREAM, TRUTH_DIR, PhantomSummary, SiteCohort, case_cells,
    fmt_cell, phantom_summary, save_png, site_rng, site_yaml, write_manifest, write_sites, write_truth, named_preset,
)

logger = logging.getLogger(__name__)

SWEEP_STREAM = 5
CINE_MANIFEST_COLUMNS: tuple[str, ...] = (
    "case_id", "label", "video", "image", "mask", "scanner", "age", "tumor_size_mm", "er", "pr", "her2",
    "ki67", "histologic_type", "histologic_grade", "reader_score", "reader_call",
)
SWEEP_TRUTH_COLUMNS: tuple[str, ...] = ("site", "case_id", "n_frames", "frame_time_ms", "key_frame", "key_position",
                                        "pole_side", "satellite_at")


def draw_cine_cohort(preset: CinePreset | str, seed: int = 0, *, flip_labels: bool = False) -> list[SiteCohort]:
    """Draw every site's features (the sweep's included), true risk and labels, without rendering any frame.

    Args:
        preset: a ``CinePreset`` or the name of one in ``CINE_PRESETS``.
        seed: the cohort seed.
        flip_labels: give every case the opposite of its drawn label (a test hook).

    Returns:
        One ``SiteCohort`` per site, in preset order.
    """
    preset = CINE_PRESETS[preset] if isinstance(preset, str) else preset
    cohorts = []
    for site in preset.preset.sites:
        features = draw_features(site.mix, site_rng(preset.preset, site, seed, FEATURE_STREAM))
        features |= draw_sweep_features(features, site_rng(preset.preset, site, seed, SWEEP_STREAM))
        risk = sweep_true_risk(features, site.mix.prevalence)
        labels = draw_labels(risk, site_rng(preset.preset, site, seed, LABEL_STREAM))
        if flip_labels:
            labels = 1 - labels
        ids = [f"{site.prefix}-{i + 1:04d}" for i in range(site.mix.n_cases)]
        cohorts.append(SiteCohort(site, ids, features, risk, labels, bayes_auc(labels, risk)))
    return cohorts


def _write_loop(rendered: RenderedCine, sweep: Sweep, folder: Path, case_id: str, cohort: SiteCohort, i: int,
                geometry: SiteGeometry, seed: int) -> tuple[str, str]:
    """Write one case's loop and its key frame as the site stores them; return their paths in the site folder."""
    site, scanner = cohort.spec, cohort.spec.scanner
    key = rendered.frames[rendered.key_frame]
    if scanner.storage == "dicom":
        age = int(cohort.features["age"][i])
        write_cine_dicom(rendered.frames, folder / f"videos/{case_id}.dcm", frame_time_ms=sweep.frame_time_ms,
                         key_frame=rendered.key_frame, scanner=scanner, site=site.name, seed=seed, case_id=case_id,
                         age=age, pixel_mm=geometry.pixel_mm, fov_box=geometry.fov_box)
        write_dicom(key, folder / f"images/{case_id}.dcm", scanner=scanner, site=site.name, seed=seed,
                    case_id=case_id, age=age, pixel_mm=geometry.pixel_mm, fov_box=geometry.fov_box)
        return f"videos/{case_id}.dcm", f"images/{case_id}.dcm"
    (folder / "videos" / case_id).mkdir()
    for t, frame in enumerate(rendered.frames):
        save_png(frame, folder / f"videos/{case_id}/frame_{t:03d}.png")
    save_png(key, folder / f"images/{case_id}.png")
    return f"videos/{case_id}", f"images/{case_id}.png"


def _write_cine_site(cohort: SiteCohort, folder: Path, preset: CinePreset, seed: int) -> list[list[object]]:
    """Render and write one site's loops, key frames, masks, manifest and site.yaml; return its sweeps' truth rows."""
    site, scanner = cohort.spec, cohort.spec.scanner
    for sub in ("videos", "images", "masks"):
        (folder / sub).mkdir(parents=True)
    (folder / "site.yaml").write_text(site_yaml(site), encoding="utf-8")
    geometry = SiteGeometry.build(scanner, site.name)
    loop_logodds = sweep_logodds(cohort.features, "image")
    reads = reader_reads(cohort.features, site_rng(preset.preset, site, seed, READER_STREAM), loop_logodds)
    rows, truth = [], []
    for i, case_id in enumerate(cohort.case_ids):
        case = sweep_lesion(cohort.features, i)
        rng = site_rng(preset.preset, site, seed, NOISE_STREAM, i)
        sweep = plan_sweep(case.lesion.n_calcifications, geometry.beam_shape, scanner.frame_time_ms,
                           preset.duration_s, preset.frames, rng)
        rendered = render_sweep(case, geometry, sweep, rng)
        video_rel, image_rel = _write_loop(rendered, sweep, folder, case_id, cohort, i, geometry, seed)
        mask_rel = f"masks/{case_id}.png"
        save_png(rendered.mask, folder / mask_rel)
        rows.append([case_id, int(cohort.labels[i]), video_rel, image_rel, mask_rel, *case_cells(cohort, i, *reads)])
        truth.append([site.name, case_id, sweep.n_frames, fmt_cell(sweep.frame_time_ms), rendered.key_frame,
                      fmt_cell(sweep.positions[rendered.key_frame]), sweep.pole_side, fmt_cell(sweep.satellite_at)])
    write_manifest(folder / "manifest.csv", CINE_MANIFEST_COLUMNS, rows)
    return truth


def _cine_facts(preset: CinePreset) -> dict[str, object]:
    """Return the cine facts of ``phantom.json``: storage, frame times, bounds and where each risk feature shows."""
    return {
        "modality": "cine",
        "sweep_duration_s": list(preset.duration_s),
        "frame_bounds": list(preset.frames),
        "storage": {s.name: "dicom_multiframe" if s.scanner.storage == "dicom" else "frame_folder"
                    for s in preset.preset.sites},
        "frame_time_ms": {s.name: s.scanner.frame_time_ms for s in preset.preset.sites},
        "key_frame_features": list(KEY_FRAME_FEATURES),
        "loop_only_features": list(LOOP_ONLY_FEATURES),
        "key_frame_terms": list(KEY_FRAME_TERMS),
        "loop_only_terms": list(LOOP_ONLY_TERMS),
    }


def build_cine_phantom(out: Path, preset: CinePreset, seed: int = 0, *, flip_labels: bool = False) -> PhantomSummary:
    """Write a cine phantom of an explicit ``CinePreset`` (``make_cine_phantom`` takes a preset name).

    Args:
        out: the folder to write into (created if needed).
        preset: the federation to draw.
        seed: the cohort seed.
        flip_labels: give every case the opposite label; pixels stay byte-identical.

    Returns:
        The summary of what was written.
    """
    out = Path(out)
    cohorts = draw_cine_cohort(preset, seed, flip_labels=flip_labels)
    written = write_sites(out, cohorts, "cine phantom", preset.name, lambda cohort, folder: _write_cine_site(cohort, folder, preset, seed))
    sweeps = [row for rows in written for row in rows]
    write_truth(cohorts, out / TRUTH_DIR, preset.preset, seed, flip_labels, FEATURE_COLUMNS + SWEEP_COLUMNS,
                _cine_facts(preset))
    with open(out / TRUTH_DIR / "sweeps.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(SWEEP_TRUTH_COLUMNS)
        writer.writerows(sweeps)
    return phantom_summary(out, cohorts)


def make_cine_phantom(out: Path, preset: str = "demo", seed: int = 0, *, flip_labels: bool = False) -> PhantomSummary:
    """Write the cine phantom ``preset`` (``"demo"`` or ``"tiny"``) drawn with ``seed`` into ``out``.

    Args:
        out: the folder that receives one folder per site and the ``_truth`` folder.
        preset: a name in ``CINE_PRESETS``.
        seed: the cohort seed; the same (preset, seed) gives the same bytes.
        flip_labels: give every case the opposite label (pixels never depend on labels).

    Returns:
        The summary of what was written.
    """
    return build_cine_phantom(Path(out), named_preset(CINE_PRESETS, preset, "cine phantom"), seed, flip_labels=flip_labels)
