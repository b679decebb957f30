"""Small cine sites made on the fly: loops as multi-frame DICOM or frame folders, with a manifest and a site config."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.client.dicom_files import US_MULTI_FRAME, header, save
from tests.conftest import write_png, write_site


def sweep(rng: np.random.Generator, label: int, frames: int, size: tuple[int, int] = (40, 48)) -> tuple[np.ndarray, int]:
    """A loop (frames, H, W) uint8 through a dark disc that is largest mid-loop; a positive case's disc is larger.

    Returns the loop and its key frame (the largest cross-section).
    """
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    peak = (7 if label else 4) + rng.uniform(0, 1.5)
    centre = (frames - 1) / 2
    loop = np.empty((frames, h, w), dtype=np.uint8)
    for t in range(frames):
        radius = peak * np.sqrt(max(0.0, 1 - ((t - centre) / (frames / 1.6)) ** 2))
        img = rng.gamma(4.0, 25.0, size).clip(0, 255)
        img[(yy - h / 2) ** 2 + (xx - w / 2) ** 2 < radius**2] *= 0.2
        loop[t] = img.astype(np.uint8)
    return loop, int(round(centre))


def make_cine_site(
    root: Path, name: str, role: str = "train", n: int = 12, *, seed: int = 0, storage: str = "folder", frames: tuple[int, int] = (6, 9), stills: bool = True,
    data_yaml: str = "",
) -> Path:
    """Write ``root/name/{site.yaml, manifest.csv, loops/}``: loops of [low, high] ``frames`` frames, with key-frame stills if ``stills``.

    ``data_yaml`` goes under ``data:`` (lines indented two spaces).
    """
    rng = np.random.default_rng(seed)
    folder = root / name
    records = []
    for i in range(n):
        label = i % 2
        loop, key = sweep(rng, label, int(rng.integers(frames[0], frames[1] + 1)))
        case = f"{name}-{i:03d}"
        if storage == "dicom":
            rel = f"loops/{case}.dcm"
            ds = header(loop.shape[1:], frames=loop.shape[0], sop=US_MULTI_FRAME)
            ds.FrameTime = 40.0
            ds.PixelData = loop.tobytes()
            save(folder / rel, ds)
        else:
            rel = f"loops/{case}"
            for t, frame in enumerate(loop):
                write_png(folder / rel / f"frame_{t}.png", frame)
        records.append({"case_id": case, "label": str(label), "video": rel, "scanner": f"{name}-scanner"})
        if stills:
            records[-1]["image"] = f"stills/{case}.png"
            write_png(folder / records[-1]["image"], loop[key])
    return write_site(folder, records, role, batch_size=4, data_yaml=data_yaml)
