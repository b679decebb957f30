"""Draw a phantom cohort and write its site folders and the truth folder; ``make_phantom``."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Mapping
from typing import Literal, TypeVar

import numpy as np
import yaml
from PIL import Image

from client.site_config import site_config_mapping
from simulation.phantom.dicom import write_dicom
from simulation.phantom.features import FEATURE_COLUMNS, HISTOLOGIC_TYPES, Features, draw_features, lesion_features
from simulation.phantom.hetero_presets import scanner_shift
from simulation.phantom.presets import PRESETS, Preset, SiteSpec
from simulation.phantom.render import SiteGeometry, render_case
from simulation.phantom.risk import bayes_auc, draw_labels, reader_reads, true_risk

logger = logging.getLogger(__name__)
T = TypeVar("T")
P = TypeVar("P")

TRUTH_DIR = "_truth"
MANIFEST_COLUMNS: tuple[str, ...] = (
    "case_id", "label", "image", "mask", "scanner", "age", "tumor_size_mm", "er", "pr", "her2",
    "ki67", "histologic_type", "histologic_grade", "reader_score", "reader_call",
)
FEATURE_STREAM, LABEL_STREAM, NOISE_STREAM, READER_STREAM = 1, 2, 3, 4
Modality = Literal["image", "cine", "multimodal"]
MODALITIES: tuple[str, ...] = ("image", "cine", "multimodal")


@dataclass
class PhantomSummary:
    """What ``make_phantom`` wrote: where, which sites, and each site's counts and Bayes AUC."""

    out: Path
    sites: list[str]
    bayes_auc: dict[str, float]
    n_cases: dict[str, int]
    n_positive: dict[str, int]


@dataclass
class SiteCohort:
    """One site's drawn cases: ids, feature columns, true risk and labels (no pixels)."""

    spec: SiteSpec
    case_ids: list[str]
    features: Features
    risk: np.ndarray
    labels: np.ndarray
    bayes_auc: float = field(default=float("nan"))


def _crc(text: str) -> int:
    """Return a stable 32-bit hash of ``text`` (unlike ``hash``, the same in every process)."""
    return zlib.crc32(text.encode("utf-8"))


def site_rng(preset: Preset, site: SiteSpec, seed: int, stream: int, case: int | None = None) -> np.random.Generator:
    """Return the generator of one (preset, seed, site, stream[, case]): independent streams.

    Args:
        preset: the preset.
        site: the site.
        seed: the cohort seed.
        stream: 1 case features, 2 labels, 3 per-case pixel noise, 4 readers, 5 sweep features.
        case: the case index, for per-case streams.

    Returns:
        A fresh numpy ``Generator``.
    """
    key = [_crc(preset.name), _crc(site.name), stream]
    if case is not None:
        key.append(case)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy=seed, spawn_key=key)))


def draw_cohort(preset: Preset | str, seed: int = 0, *, flip_labels: bool = False) -> list[SiteCohort]:
    """Draw every site's features, true risk and labels, without rendering any image.

    Args:
        preset: a ``Preset`` or the name of one in ``PRESETS``.
        seed: the cohort seed.
        flip_labels: give every case the opposite of its drawn label (a test hook).

    Returns:
        One ``SiteCohort`` per site, in preset order.
    """
    preset = PRESETS[preset] if isinstance(preset, str) else preset
    cohorts = []
    for site in preset.sites:
        features = draw_features(site.mix, site_rng(preset, site, seed, FEATURE_STREAM))
        risk = true_risk(features, site.mix.prevalence)
        labels = draw_labels(risk, site_rng(preset, site, seed, LABEL_STREAM))
        if flip_labels:
            labels = 1 - labels
        ids = [f"{site.prefix}-{i + 1:04d}" for i in range(site.mix.n_cases)]
        cohorts.append(SiteCohort(site, ids, features, risk, labels, bayes_auc(labels, risk)))
    return cohorts


CLINICAL_TYPES: dict[str, object] = {
    "age": "continuous", "tumor_size_mm": "continuous", "er": "binary", "pr": "binary", "her2": "binary", "ki67": "continuous",
    "histologic_type": {"categorical": list(HISTOLOGIC_TYPES)}, "histologic_grade": {"ordinal": ["1", "2", "3"]},
    "reader_score": {"ordinal": ["2", "3", "4", "5"]}, "reader_call": "binary",
}  # fmt: skip  # the site config's data.clinical: every clinical and reader column typed, IDC the reference type


def site_yaml(site: SiteSpec) -> str:
    """Return the text of the site's ``site.yaml`` (the site-config contract), its clinical columns declared."""
    mapping = site_config_mapping(site.name, site.role)
    mapping["data"]["clinical"] = CLINICAL_TYPES
    return yaml.safe_dump(mapping, sort_keys=False, default_flow_style=None)


def fmt_cell(value: object) -> str:
    """Format one CSV cell deterministically (floats round-trip exactly)."""
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


def save_png(array: np.ndarray, path: Path) -> None:
    """Write an 8-bit grayscale or RGB array as a PNG file."""
    Image.fromarray(array).save(path, format="PNG", compress_level=3)


def _write_site(cohort: SiteCohort, folder: Path, preset: Preset, seed: int) -> None:
    """Render and write one site's images, masks, manifest and site.yaml."""
    site, scanner = cohort.spec, cohort.spec.scanner
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    (folder / "site.yaml").write_text(site_yaml(site), encoding="utf-8")
    geometry = SiteGeometry.build(scanner, site.name)
    rows = []
    reader_score, reader_call = reader_reads(cohort.features, site_rng(preset, site, seed, READER_STREAM))
    for i, case_id in enumerate(cohort.case_ids):
        image_rel, mask_rel = write_still(cohort, i, folder, geometry, preset, seed)
        rows.append([case_id, int(cohort.labels[i]), image_rel, mask_rel,
                     *case_cells(cohort, i, reader_score, reader_call)])
    write_manifest(folder / "manifest.csv", MANIFEST_COLUMNS, rows)


def write_still(cohort: SiteCohort, i: int, folder: Path, geometry: SiteGeometry, preset: Preset, seed: int) -> tuple[str, str]:
    """Render case ``i``'s ultrasound still and write it and its mask as the site stores them; return their paths in the site folder."""
    site, scanner, case_id = cohort.spec, cohort.spec.scanner, cohort.case_ids[i]
    lesion = lesion_features(cohort.features, i)
    rendered = render_case(lesion, geometry, site_rng(preset, site, seed, NOISE_STREAM, i))
    if scanner.storage == "dicom":
        image_rel = f"images/{case_id}.dcm"
        write_dicom(rendered.image, folder / image_rel, scanner=scanner, site=site.name, seed=seed,
                    case_id=case_id, age=int(cohort.features["age"][i]),
                    pixel_mm=geometry.pixel_mm, fov_box=geometry.fov_box)
    else:
        image_rel = f"images/{case_id}.png"
        save_png(rendered.image, folder / image_rel)
    mask_rel = f"masks/{case_id}.png"
    save_png(rendered.mask, folder / mask_rel)
    return image_rel, mask_rel


def case_cells(cohort: SiteCohort, i: int, reader_score: np.ndarray, reader_call: np.ndarray) -> list[object]:
    """Return the manifest cells after the files of case ``i``: scanner, clinical columns and the readers' reads."""
    f, scanner = cohort.features, cohort.spec.scanner
    return [f"{scanner.manufacturer} {scanner.model}", int(f["age"][i]), f"{f['tumor_size_mm'][i]:.1f}",
            int(f["er"][i]), int(f["pr"][i]), int(f["her2"][i]), int(f["ki67"][i]), str(f["histologic_type"][i]),
            int(f["histologic_grade"][i]), int(reader_score[i]), int(reader_call[i])]


def write_manifest(path: Path, columns: tuple[str, ...], rows: list[list[object]]) -> None:
    """Write a site's ``manifest.csv``: the header ``columns`` and one row per case."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)


def write_truth(cohorts: list[SiteCohort], folder: Path, preset: Preset, seed: int, flip_labels: bool,
                columns: tuple[str, ...] = FEATURE_COLUMNS, more_facts: dict[str, object] | None = None) -> None:
    """Write the truth folder: per-case risk and feature ``columns``, per-site Bayes AUC, cohort facts (and ``more_facts``)."""
    folder.mkdir(parents=True)
    with open(folder / "true_risk.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("site", "case_id", "risk", "label", *columns))
        for c in cohorts:
            for i, case_id in enumerate(c.case_ids):
                cells = [fmt_cell(c.features[name][i]) for name in columns]
                writer.writerow([c.spec.name, case_id, fmt_cell(c.risk[i]), int(c.labels[i]), *cells])
    aucs = {c.spec.name: c.bayes_auc for c in cohorts}
    (folder / "bayes_auc.json").write_text(json.dumps(aucs, indent=2) + "\n", encoding="utf-8")
    facts = {
        "preset": preset.name,
        "seed": seed,
        "flip_labels": flip_labels,
        "sites": {
            c.spec.name: {
                "role": c.spec.role,
                "n_cases": len(c.case_ids),
                "n_positive": int(c.labels.sum()),
                "prevalence": float(c.labels.mean()),
                "target_prevalence": c.spec.mix.prevalence,
            }
            for c in cohorts
        },
        **(more_facts or {}),
    }
    (folder / "phantom.json").write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")


def clear_previous(out: Path, names: list[str]) -> None:
    """Remove the truth folder and the site folders of this and of any earlier phantom in ``out``."""
    previous = out / TRUTH_DIR / "phantom.json"
    if previous.is_file():
        names = names + list(json.loads(previous.read_text(encoding="utf-8")).get("sites", {}))
    for name in dict.fromkeys(names):
        folder = out / name
        if folder.is_dir() and ((folder / "site.yaml").is_file() or not any(folder.iterdir())):
            shutil.rmtree(folder)
        elif folder.exists():
            raise FileExistsError(f"{folder} exists and is not a phantom site folder; not overwriting it")
    if (out / TRUTH_DIR).is_dir():
        shutil.rmtree(out / TRUTH_DIR)


def build_phantom(out: Path, preset: Preset, seed: int = 0, *, flip_labels: bool = False) -> PhantomSummary:
    """Write a phantom cohort of an explicit ``Preset`` (``make_phantom`` takes a preset name).

    Args:
        out: the folder to write into (created if needed).
        preset: the federation to draw.
        seed: the cohort seed.
        flip_labels: give every case the opposite label; pixels stay byte-identical.

    Returns:
        The summary of what was written.
    """
    cohorts = draw_cohort(preset, seed, flip_labels=flip_labels)
    write_sites(Path(out), cohorts, "phantom", preset.name, lambda cohort, folder: _write_site(cohort, folder, preset, seed))
    shifts = {site.name: scanner_shift(site.scanner) for site in preset.sites}
    write_truth(cohorts, Path(out) / TRUTH_DIR, preset, seed, flip_labels, more_facts={"scanner_shift": shifts})
    return phantom_summary(Path(out), cohorts)


def write_sites(out: Path, cohorts: list[SiteCohort], kind: str, preset: str, write: Callable[[SiteCohort, Path], T]) -> list[T]:
    """Create ``out``, clear the previous phantom's site folders, and write each cohort's site folder with ``write``; its results."""
    out.mkdir(parents=True, exist_ok=True)
    clear_previous(out, [c.spec.name for c in cohorts])
    results = []
    for cohort in cohorts:
        logger.info("%s %s: writing %d cases of %s", kind, preset, len(cohort.case_ids), cohort.spec.name)
        results.append(write(cohort, out / cohort.spec.name))
    return results


def named_preset(presets: Mapping[str, P], name: str, kind: str) -> P:
    """The preset called ``name``, or ``ValueError`` naming the known ones."""
    if name not in presets:
        raise ValueError(f"unknown {kind} preset {name!r}; choose one of {sorted(presets)}")
    return presets[name]


def phantom_summary(out: Path, cohorts: list[SiteCohort]) -> PhantomSummary:
    """Return what was written to ``out``: the sites, and each one's counts and Bayes AUC."""
    return PhantomSummary(
        out=out,
        sites=[c.spec.name for c in cohorts],
        bayes_auc={c.spec.name: c.bayes_auc for c in cohorts},
        n_cases={c.spec.name: len(c.case_ids) for c in cohorts},
        n_positive={c.spec.name: int(c.labels.sum()) for c in cohorts},
    )


def make_phantom(out: Path, preset: str = "demo", seed: int = 0, *, flip_labels: bool = False,
                 modality: Modality = "image") -> PhantomSummary:
    """Write the phantom multi-hospital cohort ``preset`` drawn with ``seed`` into ``out``.

    Args:
        out: the folder that receives one folder per site and the ``_truth`` folder.
        preset: a name in ``PRESETS`` (``"demo"``, ``"tiny"``, ``"hetero"`` or ``"hetero-tiny"``; cine and
            multimodal: ``"demo"`` or ``"tiny"``).
        seed: the cohort seed; the same (preset, seed) gives the same bytes.
        flip_labels: give every case the opposite label (pixels never depend on labels).
        modality: ``"image"`` (one still per case), ``"cine"`` (a probe sweep per case, ``cine_writer.py``) or
            ``"multimodal"`` (the still plus an H&E micrograph and a two-view mammogram, ``multimodal_writer.py``).

    Returns:
        The summary of what was written.
    """
    if modality == "cine":
        from simulation.phantom.cine_writer import make_cine_phantom  # noqa: PLC0415 - it builds on this module

        return make_cine_phantom(Path(out), preset, seed, flip_labels=flip_labels)
    if modality == "multimodal":
        from simulation.phantom.multimodal_writer import make_multimodal_phantom  # noqa: PLC0415 - it builds on this module

        return make_multimodal_phantom(Path(out), preset, seed, flip_labels=flip_labels)
    if modality != "image":
        raise ValueError(f"unknown phantom modality {modality!r}; choose one of {list(MODALITIES)}")
    return build_phantom(Path(out), named_preset(PRESETS, preset, "phantom"), seed, flip_labels=flip_labels)


def require_dp(out: Path, target_epsilon: float, delta: float = 1.0e-5, max_grad_norm: float = 1.0) -> list[str]:
    """Make every training site of the phantom in ``out`` train only with DP-SGD at ``target_epsilon``; the sites changed."""
    changed = []
    for path in sorted(Path(out).glob("*/site.yaml")):
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        if config.get("role") != "train":
            continue
        config.setdefault("privacy", {})["dp"] = {"enabled": True, "target_epsilon": float(target_epsilon), "delta": float(delta), "max_grad_norm": float(max_grad_norm)}
        path.write_text(yaml.safe_dump(config, sort_keys=False, default_flow_style=None), encoding="utf-8")
        changed.append(str(config["site"]))
    return changed
