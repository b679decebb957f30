"""QAMEBI / BUID (qamebi.com breast-ultrasound-images-database): lesion malignancy from the class folders.

Layout (``root`` is the folder both zips were unzipped into, or a folder above it)::

    Benign/     1 Benign Image.bmp  1 Benign Mask.tif  2 Benign Image.bmp ...      (Benign.zip)
    Malignant/  1 Malignant Image.bmp  1 Malignant Mask.tif ...                   (Malignant.zip)

Each class folder is looked for on its own (at or under ``root``), so ``Benign/Benign/`` works too.
Label: the folder, Benign -> 0, Malignant -> 1 (``MALIGNANCY``); nothing is dropped (files that are
not ``N Class Image.bmp`` are ignored). Every image's ``N Class Mask.tif`` must exist.
Grouping: no patient id, one case per image, id = class + N (``benign-1``; numbers restart per
class). Center: "QAMEBI" (one site; scanner unknown). No official split.
"""

from __future__ import annotations

import re
from pathlib import Path

from simulation.public.cohort import MALIGNANCY, PublicCase, PublicDataError, PublicDataset, PublicImage
from simulation.public.files import files_in, find_root, make_dataset, require_file

NAME = "QAMEBI"
CLASSES = {"Benign": 0, "Malignant": 1}


def read(root: Path, derived: Path) -> PublicDataset:
    """Read the Benign and Malignant folders (``derived`` is not used)."""
    cases = [case for cls, label in CLASSES.items() for case in _cases(Path(root), cls, label)]
    return make_dataset(NAME, MALIGNANCY, cases, Path(root).resolve())


def _cases(root: Path, cls: str, label: int) -> list[PublicCase]:
    """One case per ``N Class Image.bmp`` of the class's folder, with its ``N Class Mask.tif``."""
    folder = find_root(root, (f"* {cls} Image.bmp",), f"{NAME} {cls}")
    pattern = re.compile(rf"^(\d+) {cls} Image\.bmp$", re.IGNORECASE)
    cases = []
    for image in files_in(folder, f"{NAME} {cls}", (".bmp",)):
        match = pattern.match(image.name)
        if match is None:
            continue
        number = match.group(1)
        mask = require_file(folder / f"{number} {cls} Mask.tif", f"{NAME} image {image}: mask")
        cases.append(PublicCase(f"{cls.lower()}-{number}", label, (PublicImage(image.resolve(), (mask,)),), NAME))
    if not cases:
        raise PublicDataError(f"{NAME}: folder {folder} holds no '<N> {cls} Image.bmp' images")
    return cases
