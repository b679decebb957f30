"""BUSI (Al-Dhabyani et al. 2020, Baheya Hospital, Cairo): lesion malignancy from the class folders.

Layout (``root`` is ``Dataset_BUSI_with_GT`` or a folder above it)::

    Dataset_BUSI_with_GT/
      benign/     benign (1).png  benign (1)_mask.png  benign (4)_mask_1.png ...
      malignant/  malignant (1).png  malignant (1)_mask.png  malignant (53)_mask_1.png ...
      normal/     normal (1).png  normal (1)_mask.png ...      (optional; all-black masks)

Label: the folder, benign -> 0, malignant -> 1 (``MALIGNANCY``); ``normal/`` has no lesion and is
left out (counted in ``notes``). An image is a ``*.png`` whose stem holds no ``_mask``; its masks are
every ``{stem}_mask*.png`` (``_mask``, ``_mask_1``, ``_mask_2``), of which ``{stem}_mask.png`` must exist.
Grouping: no patient id is published, so one case per image, id = the stem made safe
(``benign (12)`` -> ``benign-12``). Center: "BUSI" (one hospital; scanner GE LOGIQ E9). No official split.
"""

from __future__ import annotations

import re
from pathlib import Path

from simulation.public.cohort import MALIGNANCY, PublicCase, PublicDataError, PublicDataset, PublicImage
from simulation.public.files import dropped, files_in, find_root, make_dataset, natural_key, safe_id

NAME = "BUSI"
SCANNER = "GE LOGIQ E9"
CLASSES = {"benign": 0, "malignant": 1}
NORMAL = "normal"
_MASK = re.compile(r"_mask(_\d+)?$")


def read(root: Path, derived: Path) -> PublicDataset:
    """Read BUSI's benign and malignant folders (``derived`` is not used)."""
    base = find_root(root, tuple(CLASSES), NAME)
    cases = [case for folder, label in CLASSES.items() for case in _cases(base / folder, label)]
    normal = base / NORMAL
    normals = len(_images(files_in(normal, NAME))[0]) if normal.is_dir() else 0
    return make_dataset(NAME, MALIGNANCY, cases, base, scanner=SCANNER, notes=[dropped(normals, f"normal images (no lesion) of {normal}")])


def _cases(folder: Path, label: int) -> list[PublicCase]:
    """One case per image of a class folder, with all its masks."""
    images, masks = _images(files_in(folder, f"{NAME} class folder", (".png",)))
    if not images:
        raise PublicDataError(f"{NAME}: class folder {folder} holds no images (*.png without '_mask')")
    cases = []
    for image in images:
        own = sorted(masks.get(image.stem, []), key=lambda p: natural_key(p.stem))
        if folder / f"{image.stem}_mask.png" not in own:
            raise PublicDataError(f"{NAME}: mask {folder / f'{image.stem}_mask.png'} of image {image} not found")
        cases.append(PublicCase(safe_id(image.stem), label, (PublicImage(image.resolve(), tuple(m.resolve() for m in own)),), NAME))
    return cases


def _images(files: list[Path]) -> tuple[list[Path], dict[str, list[Path]]]:
    """The images of a folder's PNGs, and its masks keyed by their image's stem (the stem less ``_mask*``)."""
    images = [p for p in files if "_mask" not in p.stem]
    masks: dict[str, list[Path]] = {}
    for path in files:
        if _MASK.search(path.stem):
            masks.setdefault(_MASK.sub("", path.stem), []).append(path)
    return images, masks
