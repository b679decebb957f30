"""BreastMNIST (MedMNIST v2; thumbnails of BUSI): lesion malignancy from the .npz labels.

Layout (``root`` is the .npz file, the folder holding it, or a folder above that)::

    breastmnist.npz   (28x28) or breastmnist_64.npz / _128.npz / _224.npz   (the largest found is read)
      train_images uint8[N,H,W]  train_labels int[N,1]   (also val_*, test_*)

Label: MedMNIST's 0 = malignant, 1 = normal/benign, **inverted** to malignant -> 1, normal/benign
-> 0 (``MALIGNANCY``); nothing is dropped (its "benign" class includes BUSI's normals).
Images: each is written to ``derived`` as ``{split}_{index:04d}.png`` (a PNG already holding the
same pixels is not rewritten). No masks. Grouping: no patient id, one case per image, id
``{split}-{index:04d}``. Center: "BreastMNIST". Official split: the npz keys (train/val/test).
The thumbnails carry no scanner UI (``crop`` "none"); the scanner is BUSI's. Never federate
BreastMNIST with BUSI: they hold the same images.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from simulation.public.busi import SCANNER
from simulation.public.cohort import MALIGNANCY, PublicCase, PublicDataError, PublicDataset, PublicImage
from simulation.public.files import find_root, make_dataset

NAME = "BreastMNIST"
SPLITS = ("train", "val", "test")
FILES = "breastmnist*.npz"
LABEL = {0: 1, 1: 0}  # MedMNIST's 0 (malignant) -> 1; 1 (normal, benign) -> 0


def read(root: Path, derived: Path) -> PublicDataset:
    """Read the .npz and write its images as PNGs under ``derived``."""
    path = _npz(Path(root))
    derived = Path(derived)
    derived.mkdir(parents=True, exist_ok=True)
    arrays = _arrays(path)
    cases, written = [], 0
    for split in SPLITS:
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        for index in range(len(images)):
            label = _label(path, split, index, labels[index])
            png, new = _png(derived / f"{split}_{index:04d}.png", images[index])
            written += new
            cases.append(PublicCase(f"{split}-{index:04d}", label, (PublicImage(png),), NAME, split=split))
    notes = [f"images of {path.name} written as PNG to {derived} ({written} new)", "BreastMNIST holds BUSI's images: do not federate it with BUSI"]
    return make_dataset(NAME, MALIGNANCY, cases, path, scanner=SCANNER, crop="none", notes=notes)


def _npz(root: Path) -> Path:
    """The .npz file: ``root`` itself, or the largest-resolution ``breastmnist*.npz`` at or under it."""
    if root.is_file():
        return root.resolve()
    folder = find_root(root, (FILES,), NAME)
    return max(folder.glob(FILES), key=lambda p: int(m.group(1)) if (m := re.search(r"_(\d+)\.npz$", p.name)) else 28)


def _arrays(path: Path) -> dict[str, np.ndarray]:
    """The six arrays of the .npz, each required."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise PublicDataError(f"{NAME} {path}: cannot be read: {err}") from err
    missing = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels") if f"{s}_{k}" not in arrays]
    if missing:
        raise PublicDataError(f"{NAME} {path}: missing array(s) {', '.join(missing)} (it has {', '.join(arrays) or 'none'})")
    for split in SPLITS:
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim not in (3, 4) or len(images) != len(labels):
            raise PublicDataError(f"{NAME} {path}: {split}_images {images.shape} and {split}_labels {labels.shape} do not match (N,H,W) and (N,1)")
    return arrays


def _label(path: Path, split: str, index: int, value: np.ndarray) -> int:
    """One image's label, inverted (0 malignant -> 1)."""
    raw = int(np.asarray(value).reshape(-1)[0])
    if raw not in LABEL:
        raise PublicDataError(f"{NAME} {path}: {split}_labels[{index}] is {raw}, not 0 (malignant) or 1 (normal, benign)")
    return LABEL[raw]


def _png(target: Path, pixels: np.ndarray) -> tuple[Path, bool]:
    """Write ``pixels`` to ``target`` unless it already holds them; return the path and whether it was written."""
    array = np.asarray(pixels, dtype=np.uint8)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if target.is_file():
        try:
            with Image.open(target) as old:
                if np.array_equal(np.asarray(old), array):
                    return target.resolve(), False
        except OSError:
            pass
    Image.fromarray(array).save(target)
    return target.resolve(), True
