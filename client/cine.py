"""Ultrasound cine loops: every frame of a multi-frame DICOM or a folder of frames, its frame time, and the frame-sampling rule.

Reading (``read_cine``):

* A multi-frame DICOM gives (frames, H, W) grayscale after the LUTs, or (frames, H, W, 3) RGB,
  decoded frame by frame with the still-image rules of ``client/dicom.py`` (every photometric
  interpretation and transfer syntax it reads); the ultrasound image area is the one of its regions.
* A folder gives its image files (PNG, JPEG, BMP, TIFF) in natural name order (``f2`` before
  ``f10``), each decoded as a still raster (alpha dropped); every frame must have the first one's size and channels.
* Frame time in milliseconds: FrameTime (0018,1063); else the mean of FrameTimeVector (0018,1065)
  without its first entry (0, by the standard); else 1000 / CineRate (0018,0040) or
  RecommendedDisplayFrameRate (0008,2144); None when the loop states none (a frame folder).

Sampling (``segment_indices``), the temporal-segment rule of TSN, which TIN and TSM train with: the
loop's n frames are cut into T equal segments (segment k covers frames [k n / T, (k + 1) n / T));
training takes one frame at random in each segment, evaluation the middle frame of each. A loop
shorter than T, and a loop with no frame, is refused by name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from client.errors import SiteDataError

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Cine:
    """A decoded loop: (frames, H, W[, 3]) pixels, milliseconds between frames (None: not stated) and the image area."""

    frames: np.ndarray
    frame_time_ms: float | None
    region: Box | None


def segment_indices(n_frames: int, t: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """T frame indices of an n-frame loop: one at random per equal segment with ``rng`` (training), each segment's middle without."""
    if t < 1:
        raise ValueError(f"clip length T = {t} must be at least 1")
    if n_frames < t:
        raise ValueError(f"{n_frames} frame(s), fewer than the clip length T = {t}")
    edges = np.arange(t + 1) * n_frames / t
    low, high = np.ceil(edges[:-1]).astype(int), np.ceil(edges[1:]).astype(int)  # segment k: frames low[k] .. high[k] - 1
    if rng is None:
        return ((low + high - 1) // 2).astype(int)
    return np.array([rng.integers(a, b) for a, b in zip(low, high)], dtype=int)


def frame_time_ms(ds: object) -> float | None:
    """The loop's time between frames in ms, from the tags the module names (None when none is usable)."""
    frame_time = _positive(getattr(ds, "FrameTime", None))
    if frame_time is not None:
        return frame_time
    vector = getattr(ds, "FrameTimeVector", None)
    if vector is not None:
        values = [_positive(v) for v in (vector if isinstance(vector, Iterable) and not isinstance(vector, str) else [vector])][1:]
        if values and all(v is not None for v in values):
            return float(np.mean(values))
    for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
        rate = _positive(getattr(ds, keyword, None))
        if rate is not None:
            return 1000.0 / rate
    return None


def _positive(value: object) -> float | None:
    """A tag value as a positive finite float, else None."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def read_cine(path: Path) -> Cine:
    """Every frame of a multi-frame DICOM or a frame folder (module rules); errors name the file or folder."""
    from client.images import pixel_limit

    path = Path(path)
    if path.is_dir():
        return _read_folder(path)
    from client.dicom import decode_cine  # pydicom only for DICOM loops

    return decode_cine(path, pixel_limit())


def natural_key(name: str) -> list[object]:
    """Sort key that orders embedded numbers by value (``f2`` before ``f10``)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def frame_files(folder: Path) -> list[Path]:
    """A frame folder's image files in natural name order; a folder without any is named."""
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES), key=lambda p: natural_key(p.name))
    if not files:
        raise SiteDataError(f"cine folder {folder}: no frame images ({', '.join(FRAME_SUFFIXES)})", "cine folder without frames")
    return files


def _read_folder(folder: Path) -> Cine:
    """A folder of frame images (grayscale or RGB as stored), in natural name order, all of the first frame's shape."""
    from client.images import read_raster

    files = frame_files(folder)
    frames = []
    for file in files:
        frame = read_raster(file)
        frame = frame[..., :3] if frame.ndim == 3 else frame  # an alpha channel is not image
        if frames and frame.shape != frames[0].shape:
            raise SiteDataError(
                f"cine folder {folder}: frame {file.name} is {frame.shape}, unlike the first frame's {frames[0].shape}",
                "cine folder frames differ in size or channels",
            )
        frames.append(frame)
    return Cine(np.stack(frames), None, None)
