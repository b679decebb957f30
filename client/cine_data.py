"""A site's cine loops decoded once into the site cache, and the clips a video model trains on.

Every case's loop (its ``video`` column) is read whole (``client/cine.py``), cropped to one UI box
for the whole loop, resized to ``image-size`` and scaled to [0, 1] over the loop's 1st-99th
percentile (``client/clip_transforms.py``), then kept as uint8 frames (F, S, S) in the site cache,
keyed by the loop's file (or every frame file's) stamp, the site's crop and the size: a later
process, or another clip length, reads it back without decoding.

Clips are cut per item (``ClipDataset``): T frames by the segment rule (random within each segment
for training, each segment's middle for evaluation), as float only for the clips of the batch
being built, with seed 001's augmentation drawn once per clip. A loop shorter than T, an
unreadable frame and a loop with no frames are named by manifest row and file.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter

import numpy as np
import torch
from torch.utils.data import Dataset

from client.cine import read_cine, segment_indices
from client.clip_transforms import clip_augment, clip_preprocess, crop_loop
from client.data import Entry, SiteData, SplitData, UnreadableCase, cached_entries, gather_site
from client.errors import SiteDataError
from client.manifest import Case
from client.site_cache import Arrays, Memory, SiteCache, cache_key, file_stamp
from client.site_config import SiteConfig
from client.site_index import fold_cases
from client.transforms import CropSetting

logger = logging.getLogger("axilla.client")

_MEMORY: Memory[SiteData] = Memory(8)


class ClipDataset(Dataset):
    """Clips of ``frames`` frames from a split's loops: (1, T, S, S) float in [0, 1], label, and no mask."""

    def __init__(self, loops: list[np.ndarray], labels: torch.Tensor, frames: int, size: int, train: bool) -> None:
        self.loops, self.labels, self.frames, self.train = loops, labels, frames, train
        self.augment = clip_augment(size) if train else None

    def __len__(self) -> int:
        return len(self.loops)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        """One clip: random frames per segment and augmentation when training (seeded from torch's RNG), centred frames otherwise."""
        loop = self.loops[index]
        seed = int(torch.randint(0, 2**31 - 1, ()).item()) if self.train else 0
        picks = segment_indices(len(loop), self.frames, np.random.default_rng(seed) if self.train else None)
        clip = torch.from_numpy(loop[picks].astype(np.float32) / 255.0)
        if self.augment is not None:
            self.augment.set_random_state(seed)
            clip = torch.as_tensor(self.augment(clip), dtype=torch.float32)
        return {"image": clip[None], "label": self.labels[index], "has_mask": torch.tensor(False)}


def loop_key(case: Case, crop: CropSetting, size: int) -> str:
    """The site-cache key of a case's preprocessed loop: its file's (or frames') stamp, the site's UI crop and the size."""
    return cache_key("loop", file_stamp(case.video), crop, size)


def load_cine_site_data(config: SiteConfig, size: int, frames: int, folds: tuple[int, int] = (0, 0)) -> SiteData:
    """The site's loops at ``size`` px for clips of ``frames`` frames: from memory, else the site cache, decoding only what it lacks.

    ``folds`` (folds, fold) gives the splits of a cross-validation fold, as for still images.
    """
    cases, splits = fold_cases(config, *folds)
    without = [c.row for c in cases if c.video is None]
    if without:
        rows = ", ".join(str(r) for r in without[:10]) + (" ..." if len(without) > 10 else "")
        raise SiteDataError(
            f"manifest {config.data.manifest}: this task trains on cine loops, but {len(without)} row(s) have no 'video' (rows {rows})",
            f"{len(without)} row(s) without a cine loop",
        )
    keys = [loop_key(case, config.data.crop, size) for case in cases]
    content = cache_key("cine-site", repr(config), size, frames, [[repr(c), splits[c.case_id], k] for c, k in zip(cases, keys)])
    data = _MEMORY.get(content)
    if data is None:
        data = _load(config, size, frames, cases, splits, keys)
        _MEMORY.put(content, data)
    return data


def _load(config: SiteConfig, size: int, frames: int, cases: list[Case], splits: dict[str, str], keys: list[str]) -> SiteData:
    """Every loop from the site cache, decoding and storing the missing ones; fails on the first bad or short loop."""
    prep = clip_preprocess(size)

    def long_enough(item: Entry) -> None:
        """Refuse a loop shorter than the clip, by row and file."""
        entry, case, _ = item
        n = int(entry["frames"].shape[0])
        if n < frames:
            raise SiteDataError(
                f"manifest row {case.row} (case {case.case_id}): cine loop {case.video} has {n} frame(s), fewer than the clip length T = {frames}",
                f"manifest row {case.row}: cine loop shorter than the clip length T = {frames}",
            )

    by_split, shapes, fingerprint, decoded = gather_site(
        config, cases, splits, keys, lambda case: prepare_loop(case, config.data.crop, prep), accept=long_enough
    )
    out = {name: _split(items, size) for name, items in by_split.items()}
    logger.info("site %s: loaded %d cine loops, %d decoded, %d from the site cache", config.site, len(cases), decoded, len(cases) - decoded)
    return SiteData(config, size, out, shapes, fingerprint, frames=frames)


def prepare_loop(case: Case, crop: CropSetting, prep: object) -> Arrays:
    """A case's site-cache entry: uint8 frames (F, S, S), the frame time in ms (NaN: not stated), the stored frame shape, a digest."""
    assert case.video is not None
    try:
        cine = read_cine(case.video)
    except SiteDataError as err:
        raise SiteDataError(f"manifest row {case.row} (case {case.case_id}): {err}", f"manifest row {case.row}: {err.public}") from err
    if cine.frames.shape[0] == 0:
        raise SiteDataError(f"manifest row {case.row} (case {case.case_id}): cine loop {case.video} has no frames", f"manifest row {case.row}: cine loop without frames")
    cropped = crop_loop(cine, crop)
    scaled = torch.as_tensor(prep(torch.as_tensor(cropped)), dtype=torch.float32).numpy()  # type: ignore[operator]
    quantised = np.rint(np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)
    frame_time = np.array(np.nan if cine.frame_time_ms is None else cine.frame_time_ms, dtype=np.float64)
    return {
        "frames": quantised,
        "frame_time_ms": frame_time,
        "shape": np.array(cine.frames.shape[1:3], dtype=np.int64),
        "digest": np.frombuffer(hashlib.sha256(quantised.tobytes()).digest(), dtype=np.uint8),
    }


def _split(items: list[Entry], size: int) -> SplitData:
    """One split's loops, labels and cases (no still images: ``images`` is empty)."""
    return SplitData(
        images=torch.empty(len(items), 0),
        labels=torch.tensor([c.label for _, c, _ in items], dtype=torch.long),
        scanners=[c.scanner for _, c, _ in items],
        cases=[c for _, c, _ in items],
        keys=[k for _, _, k in items],
        loops=[e["frames"] for e, _, _ in items],
    )


def check_loops(config: SiteConfig, size: int) -> tuple[list[str], list[UnreadableCase]]:
    """``--check``: decode every cine loop into the site cache, skipping and listing the unreadable ones; summary lines.

    The lines give the loops' count, frames per loop and the frame times their files state.
    """
    cases, _ = fold_cases(config)
    loops = [c for c in cases if c.video is not None]
    if not loops:
        return [], []
    prep = clip_preprocess(size)
    lengths: list[int] = []
    times: Counter[str] = Counter()
    unreadable: list[UnreadableCase] = []
    keys = [loop_key(case, config.data.crop, size) for case in loops]
    for (entry, _, _), _ in cached_entries(SiteCache(config.output_dir), loops, keys, lambda case: prepare_loop(case, config.data.crop, prep), unreadable):
        lengths.append(int(entry["frames"].shape[0]))
        frame_time = float(entry["frame_time_ms"])
        times["not stated" if np.isnan(frame_time) else f"{frame_time:.1f} ms"] += 1
    line = f"  cine loops: {len(loops)} ({len(lengths)} readable)"
    if lengths:
        line += f", {min(lengths)}-{max(lengths)} frames (median {int(np.median(lengths))}); frame time: " + ", ".join(f"{t} ({n})" for t, n in times.most_common())
    return [line], unreadable
