"""A site's cases loaded once, validated, split and preprocessed into tensors.

Preprocessed cases live in the site cache (``client/site_cache.py``), one entry per manifest row,
keyed by the image's and mask's path, size and mtime_ns, the site's UI crop and the size, so only
new or changed images are decoded; labels and splits are read from the manifest every time.

With the site's crop ``auto``, an image whose DICOM header gives an ultrasound image area (its 2D
regions, ``client/dicom.py``) is cropped to it; other images to the heuristic ``ui_crop_box``. The
crop comes from the file, whose stamp is in the key. Training fails on the first unreadable file;
``check_site_data`` (for ``--check``) skips and lists every one.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from monai.data import Dataset
from torch.utils.data import DataLoader

from client.errors import SiteDataError
from client.images import decode_image, read_mask
from client.inventory import Inventory
from client.manifest import SPLITS, Case
from client.site_cache import Arrays, Memory, SiteCache, cache_key, clear_memory, file_stamp
from client.site_config import SiteConfig
from client.site_index import fold_cases
from client.transforms import CropSetting, augment, crop_image, preprocess, preprocess_mask

if TYPE_CHECKING:
    from models.task import ModalInputs

logger = logging.getLogger("axilla.client")

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class SplitData:
    """One split's preprocessed images (N, 1, S, S), labels (N,) and lesion masks (N, 1, S, S).

    ``has_mask`` (N,) tells which cases have a manifest mask (the others' masks are zeros);
    ``cases`` are the manifest rows, kept at the site to re-read images (lesion crops);
    ``keys`` are their entries' keys in the site cache (what later stages key their own entries by).
    """

    images: torch.Tensor
    labels: torch.Tensor
    scanners: list[str] = field(default_factory=list)
    masks: torch.Tensor | None = None
    has_mask: torch.Tensor | None = None
    cases: list[Case] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    loops: list[np.ndarray] | None = None  # cine sites: each case's preprocessed loop (F, S, S) uint8 (``client/cine_data.py``)
    extra: dict[str, torch.Tensor] | None = None  # multimodal tasks: per-case tensors of the other modalities and ``present`` (``client/multimodal_data.py``)

    def __post_init__(self) -> None:
        n, size = len(self), self.images.shape[-1]
        if self.masks is None:
            self.masks = torch.zeros(n, 1, size, size, dtype=torch.uint8)
        if self.has_mask is None:
            self.has_mask = torch.zeros(n, dtype=torch.bool)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def rows_without_mask(self) -> list[int]:
        """Manifest rows of the cases that have no lesion mask."""
        assert self.has_mask is not None
        return [c.row for c, has in zip(self.cases, self.has_mask.tolist()) if not has]


@dataclass
class SiteData:
    """Everything a site trains and evaluates on, kept in memory at the site."""

    config: SiteConfig
    image_size: int
    splits: dict[str, SplitData]
    image_shapes: Counter[tuple[int, int]]
    fingerprint: str
    crops_without_lesion: dict[str, int] = field(default_factory=dict)  # lesion crops: per split, images with no lesion found (kept whole)
    frames: int = 0  # cine sites: the clip length T the loader cuts (0: still images)
    modal: ModalInputs | None = None  # multimodal tasks: the modalities each case's items carry

    def modality_counts(self, split: str) -> dict[str, int]:
        """Cases of ``split`` having each of the task's modalities (``n_<modality>``; empty for a single-input task)."""
        extra = self.splits[split].extra
        if self.modal is None or extra is None:
            return {}
        return {f"n_{m}": int(extra["present"][:, i].sum()) for i, m in enumerate(self.modal.modalities)}

    def counts(self) -> dict[str, dict[int, int]]:
        """Cases per split and label."""
        return {
            name: {lbl: int((s.labels == lbl).sum()) for lbl in (0, 1)} for name, s in self.splits.items()
        }

    def require_masks(self, split: str) -> None:
        """Fail, naming the manifest rows, if any case of ``split`` has no lesion mask."""
        missing = self.splits[split].rows_without_mask()
        if missing:
            rows = ", ".join(str(r) for r in missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise SiteDataError(
                f"manifest {self.config.data.manifest}: this task trains on lesion masks, but {len(missing)} {split} case(s) "
                f"have none (rows {rows}); fill their 'mask' column",
                f"{len(missing)} {split} case(s) without a lesion mask",
            )

    def loader(self, split: str, train: bool, seed: int = 0) -> DataLoader:
        """A DataLoader of case dicts (image, label, mask, has_mask), or of clips at a cine site; training loaders shuffle and augment."""
        data = self.splits[split]
        assert data.masks is not None and data.has_mask is not None
        dataset: torch.utils.data.Dataset
        if data.loops is not None:
            from client.cine_data import ClipDataset

            dataset = ClipDataset(data.loops, data.labels, self.frames, self.image_size, train)
        elif self.modal is not None:
            from client.multimodal_data import MultimodalDataset

            dataset = MultimodalDataset(data, self.image_size, self.modal, train, seed)
        else:
            items = [
                {"image": data.images[i], "label": data.labels[i], "mask": data.masks[i], "has_mask": data.has_mask[i]}
                for i in range(len(data))
            ]
            transform = augment(self.image_size) if train else None
            if transform is not None:
                transform.set_random_state(seed)
            dataset = Dataset(items, transform=transform)
        return DataLoader(
            dataset,
            batch_size=self.config.compute.batch_size,
            shuffle=train,
            drop_last=train and len(data) % self.config.compute.batch_size == 1,  # BatchNorm needs batches > 1
            num_workers=self.config.compute.num_workers,
            generator=torch.Generator().manual_seed(seed),
        )


@dataclass(frozen=True)
class UnreadableCase:
    """A manifest row whose image or mask cannot be read, and why (the message names the row, case and file)."""

    case: Case
    reason: str


_MEMORY: Memory[SiteData] = Memory(24)  # a simulation process may serve several sites and sizes


def load_site_data(config: SiteConfig, image_size: int, folds: tuple[int, int] = (0, 0)) -> SiteData:
    """Load, validate and preprocess a site's cases: from memory, else the site cache, decoding only what it lacks.

    ``folds`` (folds, fold) gives the splits of a cross-validation fold (``client/splits.fold_splits``; fold 0: the site's own).
    """
    cases, splits, keys, content = _site_keys(config, image_size, folds)
    data = _MEMORY.get(content)
    if data is None:
        data = _load(config, image_size, cases, splits, keys)
        _MEMORY.put(content, data)
    return data


def check_site_data(config: SiteConfig, image_size: int) -> tuple[SiteData, list[UnreadableCase]]:
    """Load a site as ``load_site_data`` does, but skip and list every unreadable case instead of failing on the first.

    Config, manifest and split errors still raise. A site with unreadable cases is not kept in memory.
    """
    cases, splits, keys, content = _site_keys(config, image_size)
    data = _MEMORY.get(content)
    if data is not None:
        return data, []
    unreadable: list[UnreadableCase] = []
    data = _load(config, image_size, cases, splits, keys, unreadable)
    if not unreadable:
        _MEMORY.put(content, data)
    return data, unreadable


def _site_keys(config: SiteConfig, image_size: int, folds: tuple[int, int] = (0, 0)) -> tuple[list[Case], dict[str, str], list[str], str]:
    """The manifest's cases, their splits (of a cross-validation fold), their site-cache keys and the whole site's content key."""
    cases, splits = fold_cases(config, *folds)
    keys = [case_key(case, config.data.crop, image_size) for case in cases]
    content = cache_key("site", repr(config), image_size, [[repr(c), splits[c.case_id], k] for c, k in zip(cases, keys)])
    return cases, splits, keys, content


def case_key(case: Case, crop: CropSetting, image_size: int) -> str:
    """The site-cache key of a case's preprocessed input: its files' stamps, the site's UI crop and the size."""
    return cache_key("case", file_stamp(still_source(case)), file_stamp(case.mask), crop, image_size)


def still_source(case: Case) -> Path:
    """The file a still-image model reads: the row's ``image``, else its cine loop (whose key frame it takes)."""
    source = case.image or case.video
    assert source is not None  # the manifest refuses a row with neither
    return source


def _load(
    config: SiteConfig, image_size: int, cases: list[Case], splits: dict[str, str], keys: list[str], unreadable: list[UnreadableCase] | None = None
) -> SiteData:
    """Take every case from the site cache, decoding and storing the missing ones.

    Fails on the first bad file; with an ``unreadable`` list, skips each bad case and appends it there instead.
    """
    prep, prep_mask = preprocess(image_size), preprocess_mask(image_size)
    by_split, shapes, fingerprint, decoded = gather_site(
        config, cases, splits, keys, lambda case: _prepare_case(case, config.data.crop, prep, prep_mask), unreadable
    )
    out = {name: _split_data(items, image_size) for name, items in by_split.items()}
    logger.info(
        "site %s: loaded %d images, %d decoded, %d from the site cache (%s)",
        config.site, len(cases), decoded, len(cases) - decoded, {k: len(v) for k, v in out.items()},
    )
    return SiteData(config, image_size, out, shapes, fingerprint)


Entry = tuple[Arrays, Case, str]  # a case's site-cache entry, its manifest row and the entry's key


def cached_entries(
    cache: SiteCache, cases: Sequence[Case], keys: Sequence[str], prepare: Callable[[Case], Arrays], unreadable: list[UnreadableCase] | None = None
) -> Iterator[tuple[Entry, bool]]:
    """Each case's entry from the site cache, prepared and stored when missing (then ``True``).

    Fails on the first case ``prepare`` cannot read; with an ``unreadable`` list, skips it and appends it there instead.
    """
    for case, key in zip(cases, keys):
        entry = cache.get(key)
        if entry is not None:
            yield (entry, case, key), False
            continue
        try:
            entry = prepare(case)
        except SiteDataError as err:
            if unreadable is None:
                raise
            unreadable.append(UnreadableCase(case, str(err)))
            continue
        cache.put(key, entry)
        yield (entry, case, key), True


def gather_site(
    config: SiteConfig,
    cases: Sequence[Case],
    splits: Mapping[str, str],
    keys: Sequence[str],
    prepare: Callable[[Case], Arrays],
    unreadable: list[UnreadableCase] | None = None,
    accept: Callable[[Entry], None] | None = None,
) -> tuple[dict[str, list[Entry]], Counter[tuple[int, int]], str, int]:
    """Every case's entry by split (``cached_entries``), the stored shapes, the site's content fingerprint and how many were decoded.

    ``accept`` may refuse an entry (raise) before it is used. Entries hold ``shape`` and ``digest`` arrays.
    """
    shapes: Counter[tuple[int, int]] = Counter()
    digest = hashlib.sha256()
    by_split: dict[str, list[Entry]] = {s: [] for s in SPLITS}
    decoded = 0
    for item, fresh in cached_entries(SiteCache(config.output_dir), cases, keys, prepare, unreadable):
        entry, case, _ = item
        if accept is not None:
            accept(item)
        decoded += fresh
        shapes[(int(entry["shape"][0]), int(entry["shape"][1]))] += 1
        by_split[splits[case.case_id]].append(item)
        digest.update(f"{case.case_id}|{case.label}|{splits[case.case_id]}|".encode() + entry["digest"].tobytes())
    return by_split, shapes, digest.hexdigest()[:16], decoded


def _prepare_case(case: Case, crop: CropSetting, prep: Transform, prep_mask: Transform) -> Arrays:
    """A case's site-cache entry: preprocessed image (1, S, S), mask (if any), stored shape and content digest."""
    pixels, mask, shape = read_case(case, crop)
    image = torch.as_tensor(prep(torch.as_tensor(pixels[None])), dtype=torch.float32).numpy()
    entry = {"image": image, "shape": np.array(shape, dtype=np.int64)}
    digest = hashlib.sha256(image.tobytes())
    if mask is not None:
        entry["mask"] = (torch.as_tensor(prep_mask(torch.as_tensor(mask[None], dtype=torch.float32))) > 0.5).to(torch.uint8).numpy()
        digest.update(b"mask" + entry["mask"].tobytes())
    entry["digest"] = np.frombuffer(digest.digest(), dtype=np.uint8)
    return entry


def _split_data(items: list[Entry], size: int) -> SplitData:
    """One split's tensors from its cases' entries."""
    empty = np.zeros((1, size, size), dtype=np.uint8)
    return SplitData(
        images=torch.from_numpy(np.stack([e["image"] for e, _, _ in items])) if items else torch.empty(0, 1, size, size),
        labels=torch.tensor([c.label for _, c, _ in items], dtype=torch.long),
        scanners=[c.scanner for _, c, _ in items],
        masks=torch.from_numpy(np.stack([e.get("mask", empty) for e, _, _ in items])) if items else None,
        has_mask=torch.tensor(["mask" in e for e, _, _ in items], dtype=torch.bool),
        cases=[c for _, c, _ in items],
        keys=[k for _, _, k in items],
    )


def read_case(case: Case, crop: str | tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int]]:
    """One case's image and lesion mask (if any) after the site's UI crop, and the stored image's shape.

    With crop ``auto``, the image area the DICOM header gives wins over the heuristic. A row without
    ``image`` gives its loop's key frame: a multi-frame DICOM's representative frame (else its middle
    one), a frame folder's middle frame. Any error names the manifest row.
    """
    try:
        decoded = decode_image(key_frame_file(still_source(case)))
        pixels = decoded.pixels
        mask = None if case.mask is None else read_mask(case.mask, pixels.shape)
    except SiteDataError as err:
        raise SiteDataError(f"manifest row {case.row} (case {case.case_id}): {err}", f"manifest row {case.row}: {err.public}") from err
    box = decoded.region if crop == "auto" and decoded.region is not None else crop
    cropped, cropped_mask = crop_image(pixels, box, mask)
    return cropped, cropped_mask, pixels.shape


def key_frame_file(source: Path) -> Path:
    """The still file of a source: itself, or a frame folder's middle frame in natural name order."""
    if not source.is_dir():
        return source
    from client.cine import frame_files

    files = frame_files(source)
    return files[(len(files) - 1) // 2]


def clear_cache() -> None:
    """Forget every site and crop set kept in this process (tests); the site cache on disk stays."""
    clear_memory()


def site_summary(data: SiteData, unreadable: Sequence[UnreadableCase] = (), inventory: Inventory | None = None, extra: Sequence[str] = ()) -> str:
    """A readable multi-line summary of a loaded site (for ``axilla-client --check``), with every unreadable file and why.

    With an ``inventory``, its formats, modalities and scanners (DICOM manufacturer and model, else the
    manifest's scanner column) are listed; without, the manifest's scanners. ``extra`` lines (the
    clinical columns' types) come before the fingerprint.
    """
    lines = [f"site {data.config.site} (role {data.config.role}), manifest {data.config.data.manifest}"]
    for name, counts in data.counts().items():
        lines.append(f"  {name:5s}: {counts[0] + counts[1]:4d} cases  ({counts[1]} positive, {counts[0]} negative)")
    sizes = ", ".join(f"{w}x{h} ({n})" for (h, w), n in data.image_shapes.most_common(5))
    lines.append(f"  image sizes (WxH): {sizes or 'none readable'}")
    if inventory is not None:
        lines += inventory.lines()
    else:
        scanners = Counter(s for split in data.splits.values() for s in split.scanners if s)
        if scanners:
            lines.append("  scanners: " + ", ".join(f"{s} ({n})" for s, n in scanners.most_common()))
    lines += list(extra)
    lines.append(f"  data fingerprint: {data.fingerprint}")
    if unreadable:
        lines.append(
            f"  UNREADABLE: {len(unreadable)} file(s), left out of the counts above; "
            "the site cannot train until each is fixed or its row removed:"
        )
        lines += [f"    {u.reason}" for u in unreadable]
    return "\n".join(lines)


def _pooled_extra(parts: list[SplitData]) -> dict[str, torch.Tensor] | None:
    """The sites' multimodal tensors of one split, concatenated (the sites with cases in it)."""
    filled = [p.extra for p in parts if p.extra is not None and len(p)] or [p.extra for p in parts if p.extra is not None]
    if not filled:
        return None
    return {key: torch.cat([extra[key] for extra in filled]) for key in filled[0]}  # type: ignore[index]


def pool_site_data(sites: list[SiteData], name: str = "pooled") -> SiteData:
    """Centralise several sites' splits into one in-memory site (simulation's pooled baseline only)."""
    first = sites[0]
    splits = {
        split: SplitData(
            images=torch.cat([s.splits[split].images for s in sites]),
            labels=torch.cat([s.splits[split].labels for s in sites]),
            scanners=[sc for s in sites for sc in s.splits[split].scanners],
            masks=torch.cat([s.splits[split].masks for s in sites]),  # type: ignore[misc]
            has_mask=torch.cat([s.splits[split].has_mask for s in sites]),  # type: ignore[misc]
            cases=[c for s in sites for c in s.splits[split].cases],
            keys=[k for s in sites for k in s.splits[split].keys],
            loops=None if first.splits[split].loops is None else [loop for s in sites for loop in s.splits[split].loops or []],
            extra=_pooled_extra([s.splits[split] for s in sites]),
        )
        for split in SPLITS
    }
    shapes: Counter[tuple[int, int]] = sum((s.image_shapes for s in sites), Counter())
    config = replace(first.config, site=name)
    fingerprint = hashlib.sha256("".join(s.fingerprint for s in sites).encode()).hexdigest()[:16]
    return SiteData(config, first.image_size, splits, shapes, fingerprint, frames=first.frames, modal=first.modal)
