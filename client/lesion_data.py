"""Classifier inputs of the fully automatic pipeline: every case cut to its (predicted) lesion.

The segmenter runs on the site's images at ``seg-image-size``; its lesion map is brought back
to the full-resolution image (nearest neighbour), where ``client/lesion_crop.py`` keeps the
largest lesion, takes its smallest box grown by ``crop-margin`` (given in pixels of the
segmenter's grid, scaled with the image), crops, min-max normalises and resizes to
``image-size``. With ``lesion-crop = mask`` the manifest's ground-truth masks are used instead
(a reference only: the automatic pipeline never crops with them).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping

import torch
from monai.transforms import Resize
from torch import nn

from client.data import SiteData, SplitData, read_case
from client.errors import SiteDataError
from client.lesion_crop import crop_lesion
from client.training import predict, resolve_device
from models.run_config import RunConfig
from models.task import SegmentationTask

logger = logging.getLogger("axilla.client")

_CACHE: dict[tuple[str, str, int, int, str], SiteData] = {}
_CACHE_SIZE = 24


def state_digest(states: Mapping[str, Mapping[str, torch.Tensor]]) -> str:
    """A short digest of model weights (which segmenters made a set of crops)."""
    digest = hashlib.sha256()
    for name in sorted(states):
        for key in sorted(states[name]):
            digest.update(f"{name}/{key}".encode())
            digest.update(states[name][key].detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def lesion_site_data(base: SiteData, cfg: RunConfig, segmenter: nn.Module | None = None, weights_digest: str = "") -> SiteData:
    """The site's cases as lesion crops of ``image-size`` px, cached per site, segmenter and settings.

    Args:
        base: the site loaded at ``seg-image-size`` (the segmenter's input).
        cfg: the run config (``lesion-crop``, ``crop-margin``, ``image-size``).
        segmenter: the (fused) segmenter for ``lesion-crop = predicted``; unused for ``mask``.
        weights_digest: identifies the segmenter's weights in the cache key.
    """
    key = (base.fingerprint, weights_digest if cfg.lesion_crop == "predicted" else "truth", cfg.image_size, cfg.crop_margin, cfg.lesion_crop)
    if key not in _CACHE:
        while len(_CACHE) >= _CACHE_SIZE:  # a simulation process may serve several sites; keep the newest crops
            del _CACHE[next(iter(_CACHE))]
        _CACHE[key] = _crop_site(base, cfg, segmenter)
    return _CACHE[key]


def _crop_site(base: SiteData, cfg: RunConfig, segmenter: nn.Module | None) -> SiteData:
    """Crop every split of a site."""
    if cfg.lesion_crop == "predicted" and segmenter is None:
        raise ValueError("lesion-crop = predicted needs a segmenter")
    device = resolve_device(base.config.compute.device)
    splits: dict[str, SplitData] = {}
    without_lesion: dict[str, int] = {}
    for name, split in base.splits.items():
        masks = split.masks
        if segmenter is not None and cfg.lesion_crop == "predicted":
            masks = predict(segmenter, base.loader(name, train=False), SegmentationTask(), device).masks  # None: empty split
        images, found = [], []
        for case, mask in zip(split.cases, masks if masks is not None else []):
            pixels, truth, _ = read_case(case, base.config.data.crop)
            if cfg.lesion_crop == "mask":
                if truth is None:
                    raise SiteDataError(f"manifest row {case.row} (case {case.case_id}): lesion-crop = mask needs a mask", "case without a mask")
                full = truth
            else:
                full = Resize(pixels.shape, mode="nearest")(mask.float())[0].numpy() > 0.5
            margin = int(round(cfg.crop_margin * max(pixels.shape) / base.image_size))
            crop = crop_lesion(pixels, full, cfg.image_size, margin)
            images.append(torch.from_numpy(crop.image)[None])
            found.append(crop.lesion_found)
        without_lesion[name] = len(found) - sum(found)
        size = cfg.image_size
        splits[name] = SplitData(
            images=torch.stack(images) if images else torch.empty(0, 1, size, size),
            labels=split.labels,
            scanners=split.scanners,
            cases=split.cases,
        )
    if sum(without_lesion.values()):
        logger.warning("site %s: no lesion found in %d image(s); they are classified whole", base.config.site, sum(without_lesion.values()))
    digest = hashlib.sha256(f"{base.fingerprint}|{cfg.lesion_crop}|{cfg.crop_margin}".encode())
    for split in splits.values():
        digest.update(split.images.numpy().tobytes())
    return SiteData(base.config, cfg.image_size, splits, base.image_shapes, digest.hexdigest()[:16], without_lesion)
