"""The multimodal phantom: each case's ultrasound still plus an H&E micrograph and a CC + MLO mammogram (``--modality multimodal``).

The sites, cases, features, labels, ultrasound stills, masks, clinical and reader columns are the
image phantom's of the same preset and seed (``writer.py``: the same draw and the same renderer).
Added per case, from features and their own noise streams only (never the label):

* ``pathology``: an H&E-like micrograph (RGB PNG, 128 px at demo, 96 at tiny; ``pathology_render.py``)
  of grade, Ki-67, type and HER2, stained with the site's jittered stain; one training site (demo
  hospital_c, tiny site_b) has none and leaves the column empty;
* ``mammo_cc``, ``mammo_mlo``: the two views (160 x 128 at demo, 96 x 80 at tiny; ``mammo_render.py``)
  of the mass (size, margin, aspect, calcifications) and, on MLO, the axillary node; stored by site
  as 16-bit PNG, DICOM MONOCHROME1 (12 bits stored), DICOM MONOCHROME2 (14 bits) or 8-bit PNG;
  ``mammo_cc_mask``, ``mammo_mlo_mask``: the mass's binary masks.

The truth folder adds the mammography features to ``true_risk.csv`` and writes ``modality_auc.json``:
per site, the AUC of the log-odds each modality and combination renders (``multimodal_features.py``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from simulation.phantom.features import FEATURE_COLUMNS
from simulation.phantom.mammo_dicom import BITS_STORED, write_view
from simulation.phantom.mammo_render import BREAST_HEIGHT_MM, VIEWS, render_mammograms
from simulation.phantom.multimodal_features import (
    MODALITY_TERMS, MULTIMODAL_COLUMNS, NODE_RHO, breast_features, draw_multimodal_features,
    modality_aucs, tumour_biology,
)
from simulation.phantom.multimodal_presets import MULTIMODAL_SITES, MULTIMODAL_SIZES, MultimodalSite, MultimodalSizes
from simulation.phantom.pathology_render import Stain, case_stain, render_micrograph, site_stain
from simulation.phantom.presets import PRESETS, Preset
from simulation.phantom.render import SiteGeometry
from simulation.phantom.risk import reader_reads
from simulation.phantom.writer import (
    MANIFEST_COLUMNS, READER_STREAM, TRUTH_DIR, PhantomSummary, SiteCohort, case_cells, draw_cohort,
    phantom_summary, save_png, site_rng, site_yaml, write_manifest, write_sites, write_still, write_truth, named_preset,
)

logger = logging.getLogger(__name__)

EXTRA_FEATURE_STREAM, PATHOLOGY_STREAM, MAMMO_STREAM, STAIN_STREAM = 6, 7, 8, 9
MULTIMODAL_MANIFEST_COLUMNS: tuple[str, ...] = (
    "case_id", "label", "image", "mask", "pathology", "mammo_cc", "mammo_mlo", "mammo_cc_mask", "mammo_mlo_mask",
    *MANIFEST_COLUMNS[4:],
)


def draw_multimodal_cohort(preset: Preset | str, seed: int = 0, *, flip_labels: bool = False) -> list[SiteCohort]:
    """Draw the image phantom's cohort and add every case's mammography features (no pixels).

    Args:
        preset: a ``Preset`` or the name of one in ``PRESETS``.
        seed: the cohort seed.
        flip_labels: give every case the opposite of its drawn label (a test hook).

    Returns:
        One ``SiteCohort`` per site, in preset order; risk and labels are the image phantom's.
    """
    preset = PRESETS[preset] if isinstance(preset, str) else preset
    cohorts = draw_cohort(preset, seed, flip_labels=flip_labels)
    for c in cohorts:
        c.features |= draw_multimodal_features(c.features, site_rng(preset, c.spec, seed, EXTRA_FEATURE_STREAM))
    return cohorts


def _write_case_extras(cohort: SiteCohort, i: int, folder: Path, preset: Preset, seed: int, mm: MultimodalSite,
                       sizes: MultimodalSizes, stain: Stain | None) -> list[str]:
    """Render and write case ``i``'s micrograph (if the site has pathology), both views and their masks; return their paths."""
    site, case_id = cohort.spec, cohort.case_ids[i]
    pathology_rel = ""
    if stain is not None:
        rng = site_rng(preset, site, seed, PATHOLOGY_STREAM, i)
        micrograph = render_micrograph(tumour_biology(cohort.features, i), case_stain(stain, rng), sizes.micrograph, rng)
        pathology_rel = f"pathology/{case_id}.png"
        save_png(micrograph, folder / pathology_rel)
    breast = breast_features(cohort.features, i)
    views = render_mammograms(breast, sizes.mammo, site_rng(preset, site, seed, MAMMO_STREAM, i))
    images, masks = [], []
    for view in VIEWS:
        path = write_view(views[view].image, folder / "mammo" / f"{case_id}_{view.lower()}", mm.mammo_storage,
                          view=view, laterality=breast.laterality, site=site.name, seed=seed, case_id=case_id,
                          age=int(cohort.features["age"][i]), pixel_mm=BREAST_HEIGHT_MM / sizes.mammo[0])
        images.append(path.relative_to(folder).as_posix())
        masks.append(f"mammo_masks/{case_id}_{view.lower()}.png")
        save_png(views[view].mask.astype(np.uint8) * 255, folder / masks[-1])
    return [pathology_rel, *images, *masks]


def _write_multimodal_site(cohort: SiteCohort, folder: Path, preset: Preset, seed: int) -> None:
    """Write one site's stills, masks, micrographs, mammograms, manifest and site.yaml."""
    site = cohort.spec
    mm, sizes = MULTIMODAL_SITES[preset.name][site.name], MULTIMODAL_SIZES[preset.name]
    for sub in ("images", "masks", "mammo", "mammo_masks") + (("pathology",) if mm.pathology else ()):
        (folder / sub).mkdir(parents=True)
    (folder / "site.yaml").write_text(site_yaml(site), encoding="utf-8")
    geometry = SiteGeometry.build(site.scanner, site.name)
    reads = reader_reads(cohort.features, site_rng(preset, site, seed, READER_STREAM))
    stain = site_stain(site_rng(preset, site, seed, STAIN_STREAM)) if mm.pathology else None
    rows = []
    for i, case_id in enumerate(cohort.case_ids):
        image_rel, mask_rel = write_still(cohort, i, folder, geometry, preset, seed)
        extras = _write_case_extras(cohort, i, folder, preset, seed, mm, sizes, stain)
        rows.append([case_id, int(cohort.labels[i]), image_rel, mask_rel, *extras, *case_cells(cohort, i, *reads)])
    write_manifest(folder / "manifest.csv", MULTIMODAL_MANIFEST_COLUMNS, rows)


def _multimodal_facts(preset: Preset, seed: int) -> dict[str, object]:
    """Return the multimodal facts of ``phantom.json``: storage, sizes, who lacks pathology, what each modality renders, stains."""
    sites, sizes = MULTIMODAL_SITES[preset.name], MULTIMODAL_SIZES[preset.name]
    stains = {}
    for spec in preset.sites:
        if sites[spec.name].pathology:
            stain = site_stain(site_rng(preset, spec, seed, STAIN_STREAM))
            stains[spec.name] = {"h_vector": stain.h_vector.round(6).tolist(), "e_vector": stain.e_vector.round(6).tolist(),
                                 "h_scale": round(stain.h_scale, 6), "e_scale": round(stain.e_scale, 6),
                                 "light": round(stain.light, 4)}
    return {
        "modality": "multimodal",
        "pathology_sites": [name for name, s in sites.items() if s.pathology],
        "mammo_storage": {name: s.mammo_storage for name, s in sites.items()},
        "mammo_bits_stored": {name: BITS_STORED[s.mammo_storage] for name, s in sites.items()},
        "micrograph_px": sizes.micrograph,
        "mammo_px": list(sizes.mammo),
        "modality_terms": {name: list(terms) for name, terms in MODALITY_TERMS.items()},
        "node_burden_rho": NODE_RHO,
        "stain": stains,
    }


def build_multimodal_phantom(out: Path, preset: Preset, seed: int = 0, *, flip_labels: bool = False) -> PhantomSummary:
    """``build_phantom`` for the multimodal phantom: the image phantom's cases of ``preset`` with their micrographs and mammograms."""
    out = Path(out)
    cohorts = draw_multimodal_cohort(preset, seed, flip_labels=flip_labels)
    write_sites(out, cohorts, "multimodal phantom", preset.name, lambda cohort, folder: _write_multimodal_site(cohort, folder, preset, seed))
    write_truth(cohorts, out / TRUTH_DIR, preset, seed, flip_labels, FEATURE_COLUMNS + MULTIMODAL_COLUMNS,
                _multimodal_facts(preset, seed))
    aucs = {c.spec.name: modality_aucs(c.features, c.labels) for c in cohorts}
    (out / TRUTH_DIR / "modality_auc.json").write_text(json.dumps(aucs, indent=2) + "\n", encoding="utf-8")
    return phantom_summary(out, cohorts)


def make_multimodal_phantom(out: Path, preset: str = "demo", seed: int = 0, *, flip_labels: bool = False) -> PhantomSummary:
    """``make_phantom`` for the multimodal phantom (``"demo"`` or ``"tiny"``); the same (preset, seed) gives the same bytes."""
    named_preset(MULTIMODAL_SITES, preset, "multimodal phantom")
    return build_multimodal_phantom(Path(out), PRESETS[preset], seed, flip_labels=flip_labels)
