"""A site's cases with their other modalities (pathology patches, mammography views, radiomics), cached per case.

The ultrasound stills, labels and splits come from ``client/data.py`` (its own cache entries). Each
case's other inputs are prepared once into the site cache, keyed by their files' stamps and the
settings, so only new or changed files are read:

* ``pathology``: up to ``pathology-patches`` tissue-richest patches of ``pathology-size`` px, uint8
  RGB (``client/pathology_patches.py``, after the optional stain normalisation), zero-padded;
* ``mammography``: both views, breast region cropped, oriented and resized (``client/mammo.py``);
* ``radiomics``: the IBSI-style features (``client/radiomics.py``) of each view's mass ROI, read at
  ``RADIOMICS_SIZE`` px: the manifest's ``mammo_cc_mask`` / ``mammo_mlo_mask`` (``mammo-roi = mask``),
  or the mass the federated segmenter finds in the view (``mammo-roi = predicted``; its weights'
  digest is in the cache key).

``load_view_site_data`` gives the mass segmenter its inputs: each view of a case as an image of its
own, with its mass mask.

* ``clinical``: the ``clinical-variables`` of the row (not cached: read from the manifest each time),
  coded as the clinical models code them (``client/clinical_design.py``); categorical variables are
  refused here (their levels may differ between sites), missing values are NaN.

``present`` (N, M) says which of the task's modalities each case has: ultrasound always (every row
has an image or a loop); pathology when the row gives one; mammography when it gives both views;
radiomics when it gives both views and both masks with a mass; clinical when it gives at least one of the variables. A case with none of the task's
modalities is left out of the task's cases (logged). Nothing here leaves the site.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from client.data import SiteData, SplitData, UnreadableCase, cached_entries, load_site_data
from client.errors import SiteDataError
from client.manifest import Case
from client.site_cache import Arrays, Memory, SiteCache, cache_key, file_stamp
from client.site_config import SiteConfig
from client.site_index import fold_cases
from client.transforms import augment
from models.task import InputSpec, ModalInputs

logger = logging.getLogger("axilla.client")

RADIOMICS_SIZE = 128  # views are read at this side for the radiomics features (the network's input is ``mammo-size``)
RADIOMICS_BINS = 32  # fixed bin count of the grey-level discretisation (PyRadiomics' binCount)
_MEMORY: Memory[SiteData] = Memory(8)


def load_multimodal_site_data(
    config: SiteConfig, spec: InputSpec, folds: tuple[int, int] = (0, 0), segmenter: nn.Module | None = None, digest: str = ""
) -> SiteData:
    """The site's stills at ``spec.size`` with each case's other modalities, in the splits of a cross-validation fold.

    ``segmenter`` (its weights identified by ``digest``) finds the mass ROIs of the radiomics; without, the manifest's masks are the ROIs.
    """
    modal = spec.modal
    assert modal is not None
    base = load_site_data(config, spec.size, folds)
    made_by = digest or ("predicted" if segmenter is not None else "mask")
    rows = [[c.case_id, *(c.clinical.get(name, "") for name in modal.clinical)] for s in base.splits.values() for c in s.cases]
    content = cache_key("multimodal", base.fingerprint, repr(config), repr(modal), made_by, folds, rows)
    data = _MEMORY.get(content)
    if data is None:
        data = _attach(base, modal, segmenter, made_by)
        _MEMORY.put(content, data)
    return data


def load_view_site_data(config: SiteConfig, spec: InputSpec, folds: tuple[int, int] = (0, 0)) -> SiteData:
    """Every mammography view of the site's cases with both views as an image of its own (CC, then MLO), with its mass mask."""
    data = load_multimodal_site_data(config, spec, folds)
    splits = {}
    for name, split in data.splits.items():
        assert split.extra is not None
        if not len(split):
            splits[name] = SplitData(images=torch.empty(0, 1, spec.size, spec.size), labels=torch.empty(0, dtype=torch.long))
            continue
        keep = split.extra["present"][:, 0]
        index = keep.nonzero(as_tuple=True)[0]
        views, masks = split.extra["mammo"][index], split.extra["mammo_mask"][index]
        cases = [split.cases[i] for i in index.tolist()]
        splits[name] = SplitData(
            images=views.flatten(0, 1), labels=split.labels[index].repeat_interleave(2), scanners=[c.scanner for c in cases for _ in range(2)],
            masks=masks.flatten(0, 1), has_mask=split.extra["has_mammo_mask"][index].repeat_interleave(2),
            cases=[c for c in cases for _ in range(2)], keys=[f"{split.keys[i]}/{v}" for i in index.tolist() for v in ("cc", "mlo")],
        )  # fmt: skip
    return replace(data, splits=splits, modal=None, image_size=spec.size)


def modal_key(case: Case, modal: ModalInputs, made_by: str = "mask") -> str:
    """The site-cache key of a case's other modalities: their files' stamps, the settings that shape them and what cut the ROIs."""
    files = [case.pathology, case.mammo_cc, case.mammo_mlo, case.mammo_cc_mask, case.mammo_mlo_mask]
    return cache_key("modal", [file_stamp(f) for f in files], repr(modal), RADIOMICS_SIZE, RADIOMICS_BINS, made_by)


def _attach(base: SiteData, modal: ModalInputs, segmenter: nn.Module | None, made_by: str) -> SiteData:
    """Each split's cases with their modalities' arrays and presence, the cases with none of them left out."""
    cache = SiteCache(base.config.output_dir)
    splits: dict[str, SplitData] = {}
    decoded, dropped = 0, 0
    for name, split in base.splits.items():
        keys = [modal_key(case, modal, made_by) for case in split.cases]
        entries = []
        for (entry, _, _), fresh in cached_entries(cache, split.cases, keys, lambda case: prepare_modalities(case, modal, segmenter)):
            entries.append(dict(entry))
            decoded += fresh
        if modal.clinical:
            for entry, vector in zip(entries, clinical_vectors(base.config, split.cases, modal.clinical)):
                entry["clinical"], entry["has_clinical"] = vector, np.array(bool(np.isfinite(vector).any()))
        splits[name], lost = _with_modalities(split, entries, modal)
        dropped += lost
    logger.info(
        "site %s: %s for %d cases (%d prepared now); %d case(s) without any of them left out",
        base.config.site, ", ".join(modal.modalities), sum(len(s) for s in splits.values()), decoded, dropped,
    )  # fmt: skip
    digest = hashlib.sha256((base.fingerprint + repr(modal)).encode()).hexdigest()[:16]
    return replace(base, splits=splits, fingerprint=digest, modal=modal)


def prepare_modalities(case: Case, modal: ModalInputs, segmenter: nn.Module | None = None) -> Arrays:
    """A case's site-cache entry: the arrays of every modality it has among ``modal``'s, and their presence flags."""
    try:
        return _prepare(case, modal, segmenter)
    except SiteDataError as err:
        raise SiteDataError(f"manifest row {case.row} (case {case.case_id}): {err}", f"manifest row {case.row}: {err.public}") from err


def _prepare(case: Case, modal: ModalInputs, segmenter: nn.Module | None) -> Arrays:
    """``prepare_modalities`` without the row in its errors."""
    wanted = set(modal.modalities)
    out: Arrays = {}
    digest = hashlib.sha256()
    if "pathology" in wanted:
        patches = np.zeros((modal.pathology_patches, 3, modal.pathology_size, modal.pathology_size), dtype=np.uint8)
        count = 0
        if case.pathology is not None:
            from client.pathology_patches import read_patches

            read = read_patches(case.pathology, modal.pathology_size, modal.pathology_patches, modal.stain_normalisation)
            count = len(read)
            patches[:count] = read
        out["pathology"], out["pathology_count"] = patches, np.array(count, dtype=np.int64)
        digest.update(patches.tobytes())
    if wanted & {"mammography", "radiomics"}:
        out |= _mammography(case, modal, "radiomics" in wanted, segmenter)
        digest.update(out["mammo"].tobytes())
    out["digest"] = np.frombuffer(digest.digest(), dtype=np.uint8)
    return out


def _mammography(case: Case, modal: ModalInputs, radiomics: bool, segmenter: nn.Module | None) -> Arrays:
    """Both views at ``mammo-size`` (zeros without both) with their mass masks, and their mass ROIs' radiomics (NaN without ROIs)."""
    from client.mammo import prepare_view

    shape = (2, 1, modal.mammo_size, modal.mammo_size)
    views, masks = np.zeros(shape, dtype=np.float32), np.zeros(shape, dtype=np.uint8)
    features = np.full(0, np.nan)
    has_views = case.mammo_cc is not None and case.mammo_mlo is not None
    has_masks = has_views and case.mammo_cc_mask is not None and case.mammo_mlo_mask is not None
    if has_views:
        size = max(modal.mammo_size, RADIOMICS_SIZE)
        read = [prepare_view(view, size, mask) for view, mask in ((case.mammo_cc, case.mammo_cc_mask), (case.mammo_mlo, case.mammo_mlo_mask))]
        for i, (image, mask) in enumerate(read):
            views[i] = F.interpolate(torch.from_numpy(image)[None], size=modal.mammo_size, mode="area")[0].numpy()
            if mask is not None:
                masks[i] = F.interpolate(torch.from_numpy(mask)[None].float(), size=modal.mammo_size, mode="nearest")[0].numpy().astype(np.uint8)
        rois = [mask for _, mask in read] if segmenter is None else _predicted_rois(segmenter, views, size)
        if radiomics and all(roi is not None and roi.any() for roi in rois):
            from client.radiomics import radiomics_vector

            features = np.concatenate([radiomics_vector(image[0], roi[0].astype(bool), bins=RADIOMICS_BINS) for (image, _), roi in zip(read, rois)])  # type: ignore[index]
    out: Arrays = {"mammo": views, "has_mammo": np.array(has_views), "mammo_mask": masks, "has_mammo_mask": np.array(has_masks)}
    if radiomics:
        from client.radiomics import FEATURE_NAMES

        out["radiomics"] = features if features.size else np.full(2 * len(FEATURE_NAMES), np.nan)
        out["has_radiomics"] = np.array(bool(features.size))
    return out


def clinical_vectors(config: SiteConfig, cases: list[Case], names: tuple[str, ...]) -> list[np.ndarray]:
    """Each case's ``names`` variables as one float vector (NaN where missing), coded as the clinical models code them."""
    from client.clinical import clinical_columns, is_missing
    from client.clinical_design import code_value
    from client.site_index import read_cases

    typed = clinical_columns(read_cases(config)[0], config.data.clinical, config.data.manifest).variables  # the whole manifest types them
    for name in names:
        if name not in typed:
            raise SiteDataError.public_fact(f"clinical variable '{name}' (run config 'clinical-variables') is not a typed clinical column of this site")
        if typed[name].kind == "categorical":
            raise SiteDataError.public_fact(
                f"clinical variable '{name}' is categorical; the clinical modality reads continuous, binary and ordinal variables (recode it, or model it with clinical = fusion)"
            )
    return [
        np.array([np.nan if is_missing(value := case.clinical.get(name, "")) else code_value(typed[name], value.strip())[0] for name in names], dtype=np.float64)
        for case in cases
    ]


@torch.no_grad()
def _predicted_rois(segmenter: nn.Module, views: np.ndarray, size: int) -> list[np.ndarray]:
    """The segmenter's mass in each (2, 1, S, S) view, as (1, size, size) uint8 masks (nearest upsampling of its S-pixel map)."""
    segmenter.eval()
    logits = segmenter(torch.from_numpy(views))
    return list(F.interpolate((logits > 0).float(), size=size, mode="nearest").to(torch.uint8).numpy())


def _presence(entry: Arrays, modality: str) -> bool:
    """Whether a case's entry holds ``modality``."""
    if modality == "ultrasound":
        return True
    if modality == "pathology":
        return int(entry["pathology_count"]) > 0
    return bool(entry[{"mammography": "has_mammo", "radiomics": "has_radiomics", "clinical": "has_clinical"}[modality]])


def _with_modalities(split: SplitData, entries: list[Arrays], modal: ModalInputs) -> tuple[SplitData, int]:
    """The split's cases that have at least one of the modalities, with their arrays (``extra``) and ``present``; and how many were left out."""
    present = np.array([[_presence(e, m) for m in modal.modalities] for e in entries], dtype=bool).reshape(len(entries), len(modal.modalities))
    keep = present.any(axis=1)
    index = torch.from_numpy(np.flatnonzero(keep))
    extra: dict[str, torch.Tensor] = {"present": torch.from_numpy(present[keep])}
    for key in ("pathology", "pathology_count", "mammo", "mammo_mask", "has_mammo_mask", "radiomics", "clinical"):
        if entries and key in entries[0]:
            extra[key] = torch.from_numpy(np.stack([e[key] for e in entries])[keep])
    assert split.masks is not None and split.has_mask is not None
    kept = SplitData(
        images=split.images[index], labels=split.labels[index], scanners=[s for s, k in zip(split.scanners, keep) if k],
        masks=split.masks[index], has_mask=split.has_mask[index], cases=[c for c, k in zip(split.cases, keep) if k],
        keys=[k for k, kk in zip(split.keys, keep) if kk], extra=extra,
    )  # fmt: skip
    return kept, int((~keep).sum())


class MultimodalDataset(Dataset):
    """A split's cases as dicts of every modality's tensors; training items are augmented per modality.

    The still, when the task reads it, takes the image augmentation (``client/transforms.augment``); pathology patches random
    flips and quarter turns, and HED stain jitter with ``stain-augmentation``; mammography views a
    mild gamma change (no flips: the views are oriented to the chest wall).
    """

    def __init__(self, data: SplitData, size: int, modal: ModalInputs, train: bool, seed: int) -> None:
        assert data.extra is not None and data.masks is not None and data.has_mask is not None
        self.data, self.modal, self.train = data, modal, train
        self.still = augment(size) if train and "ultrasound" in modal.modalities else None  # a still no encoder reads is left as it is
        if self.still is not None:
            self.still.set_random_state(seed)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        """One case's tensors."""
        data = self.data
        assert data.extra is not None and data.masks is not None and data.has_mask is not None
        item = {"image": data.images[index], "label": data.labels[index], "mask": data.masks[index], "has_mask": data.has_mask[index]}
        item |= {key: value[index] for key, value in data.extra.items()}
        if not self.train:
            return item
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))
        if self.still is not None:
            item |= self.still({"image": item["image"], "mask": item["mask"]})
        if "pathology" in item and int(item["pathology_count"]) > 0:
            item["pathology"] = self._patches(item["pathology"], int(item["pathology_count"]), rng)
        if "mammo" in item:
            item["mammo"] = item["mammo"].clamp(0, 1) ** float(np.exp(rng.uniform(-0.2, 0.2)))
        return item

    def _patches(self, patches: torch.Tensor, count: int, rng: np.random.Generator) -> torch.Tensor:
        """Random flips, quarter turns and (optionally) HED stain jitter of a case's real patches."""
        out = patches.clone()
        for k in range(count):
            patch = torch.rot90(patches[k], int(rng.integers(4)), dims=(1, 2))
            if rng.random() < 0.5:
                patch = patch.flip(2)
            if self.modal.stain_augmentation:
                from client.stain import stain_augment

                rgb = stain_augment(patch.permute(1, 2, 0).numpy(), rng)
                patch = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
            out[k] = patch
        return out


def check_modalities(config: SiteConfig, modal: ModalInputs) -> tuple[list[str], list[UnreadableCase]]:
    """``--check``: prepare every case's pathology and mammography inputs into the site cache, skipping and listing the unreadable ones; summary lines."""
    cases, _ = fold_cases(config)
    cases = [c for c in cases if c.pathology is not None or c.mammo_cc is not None or c.mammo_mlo is not None]
    if not cases:
        return [], []
    unreadable: list[UnreadableCase] = []
    keys = [modal_key(case, modal) for case in cases]
    entries = [entry for (entry, _, _), _ in cached_entries(SiteCache(config.output_dir), cases, keys, lambda case: prepare_modalities(case, modal), unreadable)]
    lines = []
    with_pathology = [c for c in cases if c.pathology is not None]
    if with_pathology and "pathology" in modal.modalities:
        counts = [int(e["pathology_count"]) for e in entries if int(e["pathology_count"]) > 0]
        line = f"  pathology: {len(with_pathology)} case(s) ({len(counts)} readable)"
        lines.append(line + (f", {min(counts)}-{max(counts)} patch(es) of {modal.pathology_size} px per case" if counts else ""))
    one_view = [c for c in cases if (c.mammo_cc is None) != (c.mammo_mlo is None)]
    both = sum(bool(e.get("has_mammo", False)) for e in entries)
    if both or one_view:
        rois = sum(bool(e.get("has_radiomics", False)) for e in entries)
        lines.append(
            f"  mammography: {both} readable case(s) with both views, {rois} with both mass ROIs (radiomics)"
            + (f"; {len(one_view)} case(s) with one view only (rows {', '.join(str(c.row) for c in one_view[:10])}), read without mammography" if one_view else "")
        )
    return lines, unreadable
