"""BUS_UC (Mendeley 3ksd7w7jkx): lesion malignancy from the class folders.

Layout (``root`` is any of the nested ``BUS_UC`` folders or the folder above them)::

    BUS_UC/BUS_UC/(BUS_UC/)?
      Benign/{images,masks}/01.png ...       (a mask has its image's name)
      Malignant/{images,masks}/01.png ...
      All/{images,masks}/                    (a combined copy in some extractions; not read)

Label: the folder, Benign -> 0, Malignant -> 1 (``MALIGNANCY``); nothing is dropped. Every image's
mask must exist in the class's ``masks/`` (the same name, else the same stem with another suffix).
Grouping: no patient id, one case per image; numbers restart in each class folder, so the id is
class + stem (``benign-01``). Center: "BUS_UC" (one site; scanner unknown). No official split.
"""

from __future__ import annotations

from pathlib import Path

from simulation.public.cohort import MALIGNANCY, PublicCase, PublicDataError, PublicDataset, PublicImage
from simulation.public.files import files_in, find_root, make_dataset, require_dir, safe_id, same_name

NAME = "BUS_UC"
CLASSES = {"Benign": 0, "Malignant": 1}


def read(root: Path, derived: Path) -> PublicDataset:
    """Read the Benign and Malignant folders (``derived`` is not used)."""
    base = find_root(root, tuple(f"{cls}/images" for cls in CLASSES), NAME)
    cases = [case for cls, label in CLASSES.items() for case in _cases(base / cls, label)]
    return make_dataset(NAME, MALIGNANCY, cases, base)


def _cases(folder: Path, label: int) -> list[PublicCase]:
    """One case per image of a class folder."""
    images = files_in(folder / "images", f"{NAME} images")
    if not images:
        raise PublicDataError(f"{NAME}: image folder {folder / 'images'} holds no images")
    require_dir(folder / "masks", f"{NAME} masks")
    cases = []
    for image in images:
        mask = same_name(folder / "masks", image, NAME)
        cases.append(PublicCase(safe_id(f"{folder.name.lower()}-{image.stem}"), label, (PublicImage(image.resolve(), (mask,)),), NAME))
    return cases
