"""Classifier inputs of the fully automatic pipeline: every case cut to its (predicted) lesion.

The segmenter runs on the site's images at ``seg-image-size``; its lesion map is brought back
to the full-resolution image (nearest neighbour), where ``client/lesion_crop.py`` keeps the
largest lesion, takes its smallest box grown by ``crop-margin`` (given in pixels of the
segmenter's grid, scaled with the image), crops, min-max normalises and resizes to
``image-size``. With ``lesion-crop = mask`` the manifest's ground-truth masks are used instead
(a reference only: the automatic pipeline never crops with them).

Every case's crop is a site-cache entry keyed by its base entry's key (its files, UI crop and
``seg-image-size``), the segmenters' weights digest, ``lesion-crop``, ``crop-margin`` and
``image-size``: a later process with the same segmenters neither segments nor crops again, and a
changed image is segmented and cropped alone.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import cast

import numpy as np
import torch
from monai.transforms import Resize
from torch import nn

from client.data import SiteData, SplitData, read_case
from client.errors import SiteDataError
from client.lesion_crop import crop_lesion
from client.manifest import Case
from client.site_cache import Arrays, Memory, SiteCache, cache_key
from client.training import predict, resolve_device
from models.run_config import RunConfig
from models.task import SegmentationTask

logger = logging.getLogger("axilla.client")

_MEMORY: Memory[SiteData] = Memory(24)  # a simulation process may serve several sites; keep the newest crops


def state_digest(states: Mapping[str, Mapping[str, torch.Tensor]]) -> str:
    """A short digest of model weights (which segmenters made a set of crops)."""
    digest = hashlib.sha256()
    for name in sorted(states):
        for key in sorted(states[name]):
            digest.update(f"{name}/{key}".encode())
            digest.update(states[name][key].detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def lesion_site_data(base: SiteData, cfg: RunConfig, segmenter: nn.Module | None = None, weights_digest: str = "") -> SiteData:
    """The site's cases as lesion crops of ``image-size`` px, from memory, else the site cache, cropping only what it lacks.

    Args:
        base: the site loaded at ``seg-image-size`` (the segmenter's input).
        cfg: the run config (``lesion-crop``, ``crop-margin``, ``image-size``).
        segmenter: the (fused) segmenter for ``lesion-crop = predicted``; unused for ``mask``.
        weights_digest: identifies the segmenter's weights (``state_digest``) in the cache keys;
            by default the segmenter's own ``state_dict`` is digested.
    """
    made_by = _made_by(cfg, segmenter, weights_digest)
    keys = {
        name: [cache_key("lesion", k, cfg.lesion_crop, made_by, cfg.crop_margin, cfg.image_size, base.image_size) for k in split.keys]
        for name, split in base.splits.items()
    }
    content = cache_key("lesion-site", repr(base.config), base.fingerprint, keys)
    data = _MEMORY.get(content)
    if data is None:
        data = _crop_site(base, cfg, segmenter, keys)
        _MEMORY.put(content, data)
    return data


def _made_by(cfg: RunConfig, segmenter: nn.Module | None, weights_digest: str) -> list[str]:
    """What the lesion maps come from: the ground truth, or the segmenters' weights and fusion rule."""
    if cfg.lesion_crop != "predicted":
        return ["truth"]
    if segmenter is None:
        raise ValueError("lesion-crop = predicted needs a segmenter")
    return [weights_digest or state_digest({type(segmenter).__name__: segmenter.state_dict()}), cfg.seg_fusion]


def _crop_site(base: SiteData, cfg: RunConfig, segmenter: nn.Module | None, keys: dict[str, list[str]]) -> SiteData:
    """Crop every split of a site, taking the cases the site cache holds from it."""
    cache = SiteCache(base.config.output_dir)
    splits: dict[str, SplitData] = {}
    without_lesion: dict[str, int] = {}
    for name, split in base.splits.items():
        entries = [cache.get(key) for key in keys[name]]
        todo = [i for i, entry in enumerate(entries) if entry is None]
        for i, lesion_map in zip(todo, _lesion_maps(base, name, todo, cfg, segmenter), strict=True):
            entries[i] = _crop_case(base, split.cases[i], lesion_map, cfg)
            cache.put(keys[name][i], entries[i])
        crops = cast(list[Arrays], entries)
        without_lesion[name] = sum(not bool(crop["found"]) for crop in crops)
        size = cfg.image_size
        splits[name] = SplitData(
            images=torch.from_numpy(np.stack([crop["image"] for crop in crops])) if crops else torch.empty(0, 1, size, size),
            labels=split.labels,
            scanners=split.scanners,
            cases=split.cases,
            keys=keys[name],
        )
    if sum(without_lesion.values()):
        logger.warning("site %s: no lesion found in %d image(s); they are classified whole", base.config.site, sum(without_lesion.values()))
    digest = hashlib.sha256(f"{base.fingerprint}|{cfg.lesion_crop}|{cfg.crop_margin}".encode())
    for split in splits.values():
        digest.update(split.images.numpy().tobytes())
    return SiteData(base.config, cfg.image_size, splits, base.image_shapes, digest.hexdigest()[:16], without_lesion)


def _lesion_maps(base: SiteData, split: str, rows: list[int], cfg: RunConfig, segmenter: nn.Module | None) -> list[torch.Tensor | None]:
    """The segmenter's lesion maps (1, S, S) of a split's ``rows`` at ``seg-image-size``; None each for ``lesion-crop = mask``."""
    if cfg.lesion_crop != "predicted" or not rows:
        return [None] * len(rows)
    assert segmenter is not None
    whole = base.splits[split]
    subset = SplitData(
        images=whole.images[rows], labels=whole.labels[rows], masks=whole.masks[rows], has_mask=whole.has_mask[rows]  # type: ignore[index]
    )
    loader = replace(base, splits={split: subset}).loader(split, train=False)
    masks = predict(segmenter, loader, SegmentationTask(), resolve_device(base.config.compute.device)).masks
    assert masks is not None
    return list(masks)


def _crop_case(base: SiteData, case: Case, lesion_map: torch.Tensor | None, cfg: RunConfig) -> Arrays:
    """One case's crop entry: the crop (1, size, size) cut from the full-resolution image, and whether a lesion was found."""
    pixels, truth, _ = read_case(case, base.config.data.crop)
    if lesion_map is None:
        if truth is None:
            raise SiteDataError(f"manifest row {case.row} (case {case.case_id}): lesion-crop = mask needs a mask", "case without a mask")
        full = truth
    else:
        full = Resize(pixels.shape, mode="nearest")(lesion_map.float())[0].numpy() > 0.5
    margin = int(round(cfg.crop_margin * max(pixels.shape) / base.image_size))
    crop = crop_lesion(pixels, full, cfg.image_size, margin)
    return {"image": crop.image[None].astype(np.float32), "found": np.array(crop.lesion_found)}
