"""A site's cases loaded once, validated, split and preprocessed into tensors."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from monai.data import ArrayDataset
from torch.utils.data import DataLoader

from client.errors import SiteDataError
from client.images import read_image
from client.manifest import Case, read_manifest
from client.site_config import SiteConfig
from client.splits import assign_splits, check_training_split
from client.transforms import augment, crop_image, preprocess

logger = logging.getLogger("axilla.client")


@dataclass
class SplitData:
    """The preprocessed images (N, 1, S, S) and labels (N,) of one split."""

    images: torch.Tensor
    labels: torch.Tensor
    scanners: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class SiteData:
    """Everything a site trains and evaluates on, kept in memory at the site."""

    config: SiteConfig
    image_size: int
    splits: dict[str, SplitData]
    image_shapes: Counter[tuple[int, int]]
    fingerprint: str

    def counts(self) -> dict[str, dict[int, int]]:
        """Cases per split and label."""
        return {
            name: {lbl: int((s.labels == lbl).sum()) for lbl in (0, 1)} for name, s in self.splits.items()
        }

    def loader(self, split: str, train: bool, seed: int = 0) -> DataLoader:
        """A DataLoader over one split; training loaders shuffle and augment."""
        data = self.splits[split]
        dataset = ArrayDataset(
            img=list(data.images), img_transform=augment(self.image_size) if train else None, labels=data.labels.tolist()
        )
        if train:
            dataset.set_random_state(seed)
        return DataLoader(
            dataset,
            batch_size=self.config.compute.batch_size,
            shuffle=train,
            drop_last=train and len(data) % self.config.compute.batch_size == 1,  # BatchNorm needs batches > 1
            num_workers=self.config.compute.num_workers,
            generator=torch.Generator().manual_seed(seed),
        )


_CACHE: dict[tuple[str, int, float, float], SiteData] = {}


def load_site_data(config: SiteConfig, image_size: int) -> SiteData:
    """Load, validate and preprocess a site's cases (cached per process and image size)."""
    key = (str(config.path), image_size, config.path.stat().st_mtime, config.data.manifest.stat().st_mtime)
    if key not in _CACHE:
        _CACHE[key] = _load(config, image_size)
    return _CACHE[key]


def _load(config: SiteConfig, image_size: int) -> SiteData:
    """Read every image of the manifest once; fail on the first bad row or file."""
    cases = read_manifest(config.data.manifest)
    splits = assign_splits(cases, config.role, config.data.val_fraction, config.data.test_fraction, config.data.split_seed)
    if config.trains:
        check_training_split(cases, splits, str(config.data.manifest))
    prep = preprocess(image_size)
    shapes: Counter[tuple[int, int]] = Counter()
    digest = hashlib.sha256()
    by_split: dict[str, list[tuple[torch.Tensor, int, str]]] = {s: [] for s in ("train", "val", "test")}
    for case in cases:
        pixels = _read_case(case)
        shapes[pixels.shape] += 1
        cropped, _ = crop_image(pixels, config.data.crop)
        tensor = torch.as_tensor(prep(torch.as_tensor(cropped[None])), dtype=torch.float32)
        by_split[splits[case.case_id]].append((tensor, case.label, case.scanner))
        digest.update(f"{case.case_id}|{case.label}|{splits[case.case_id]}|".encode())
        digest.update(tensor.numpy().tobytes())
    out = {
        name: SplitData(
            images=torch.stack([t for t, _, _ in items]) if items else torch.empty(0, 1, image_size, image_size),
            labels=torch.tensor([y for _, y, _ in items], dtype=torch.long),
            scanners=[s for _, _, s in items],
        )
        for name, items in by_split.items()
    }
    logger.info("site %s: loaded %d images (%s)", config.site, len(cases), {k: len(v) for k, v in out.items()})
    return SiteData(config, image_size, out, shapes, digest.hexdigest()[:16])


def _read_case(case: Case) -> np.ndarray:
    """Read one case's image, adding the manifest row to any error."""
    assert case.image is not None
    try:
        return read_image(case.image)
    except SiteDataError as err:
        raise SiteDataError(f"manifest row {case.row} (case {case.case_id}): {err}", f"manifest row {case.row}: {err.public}") from err


def clear_cache() -> None:
    """Forget every loaded site (tests, or after a site's data changed)."""
    _CACHE.clear()


def site_summary(data: SiteData) -> str:
    """A readable multi-line summary of a loaded site (for ``axilla-client --check``)."""
    lines = [f"site {data.config.site} (role {data.config.role}), manifest {data.config.data.manifest}"]
    for name, counts in data.counts().items():
        lines.append(f"  {name:5s}: {counts[0] + counts[1]:4d} cases  ({counts[1]} positive, {counts[0]} negative)")
    sizes = ", ".join(f"{w}x{h} ({n})" for (h, w), n in data.image_shapes.most_common(5))
    lines.append(f"  image sizes (WxH): {sizes}")
    scanners = Counter(s for split in data.splits.values() for s in split.scanners if s)
    if scanners:
        lines.append("  scanners: " + ", ".join(f"{s} ({n})" for s, n in scanners.most_common()))
    lines.append(f"  data fingerprint: {data.fingerprint}")
    return "\n".join(lines)


def site_path_for_partition(sites_dir: Path, partition_id: int) -> Path:
    """The site config of a simulated node: the ``partition_id``-th site folder, sorted by name."""
    folders = discover_sites(sites_dir)
    if partition_id >= len(folders):
        raise SiteDataError(
            f"simulation node {partition_id} has no site: {sites_dir} holds {len(folders)} site folders",
            "simulation: no site for this node",
        )
    return folders[partition_id]


def discover_sites(sites_dir: Path) -> list[Path]:
    """Site config files of a federation folder: ``<dir>/<site>/site.yaml``, sorted by folder name."""
    return sorted(p for p in Path(sites_dir).glob("*/site.yaml") if not p.parent.name.startswith("_"))


def pool_site_data(sites: list[SiteData], name: str = "pooled") -> SiteData:
    """Centralise several sites' splits into one in-memory site (simulation's pooled baseline only)."""
    first = sites[0]
    splits = {
        split: SplitData(
            images=torch.cat([s.splits[split].images for s in sites]),
            labels=torch.cat([s.splits[split].labels for s in sites]),
            scanners=[sc for s in sites for sc in s.splits[split].scanners],
        )
        for split in ("train", "val", "test")
    }
    shapes: Counter[tuple[int, int]] = sum((s.image_shapes for s in sites), Counter())
    config = replace(first.config, site=name)
    return SiteData(config, first.image_size, splits, shapes, hashlib.sha256("".join(s.fingerprint for s in sites).encode()).hexdigest()[:16])
