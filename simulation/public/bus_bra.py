"""BUS-BRA (Gómez-Flores et al. 2024, INCA Rio de Janeiro): lesion malignancy from ``bus_data.csv``.

Layout (``root`` is ``BUSBRA`` or a folder above it)::

    BUSBRA/
      Images/  bus_0001-l.png  bus_0001-r.png  bus_0006-s.png ...
      Masks/   mask_0001-l.png mask_0001-r.png ...          (one per image, must exist)
      bus_data.csv      ID,Case,Histology,Pathology,BIRADS,Device,Width,Height,Side,BBOX
      5-fold-cv.csv  10-fold-cv.csv  LICENSE.txt            (not read)

Label: ``Pathology``, benign -> 0, malignant -> 1 (``MALIGNANCY``); nothing is dropped.
Grouping: ``Case`` (the patient): one case per ``Case`` value with all its images (``ID`` ->
``Images/{ID}.png``, mask ``Masks/{ID with bus_ -> mask_}.png``); a case with two pathologies or two
devices is an error. Center: the ``Device`` value (4 scanners of one institute), also the ``scanner``
column. Columns: ``histology``, ``histologic_type`` (IDC/ILC/DCIS/other for malignant lesions),
``birads``, ``side`` (left/right/single; an image pair of a case gives ``left&right``). The
cross-validation fold files are not a train/val/test split: no official split.
"""

from __future__ import annotations

from pathlib import Path

from simulation.public.cohort import MALIGNANCY, PublicCase, PublicDataError, PublicDataset, PublicImage
from simulation.public.files import Row, csv_rows, find_root, histologic_type, joined, make_dataset, natural_key, require_file, safe_id

NAME = "BUS-BRA"
TABLE = "bus_data.csv"
COLUMNS = ("ID", "Case", "Histology", "Pathology", "BIRADS", "Device", "Side")
PATHOLOGY = {"benign": 0, "malignant": 1}


def read(root: Path, derived: Path) -> PublicDataset:
    """Read ``bus_data.csv`` and reference its images and masks (``derived`` is not used)."""
    base = find_root(root, (TABLE, "Images"), NAME)
    by_case: dict[str, list[Row]] = {}
    for row in csv_rows(base / TABLE, COLUMNS):
        by_case.setdefault(row.required("Case"), []).append(row)
    cases = [_case(base, case, rows) for case, rows in sorted(by_case.items(), key=lambda item: natural_key(item[0]))]
    return make_dataset(NAME, MALIGNANCY, cases, base)


def _case(base: Path, case: str, rows: list[Row]) -> PublicCase:
    """One patient's images; its rows must agree on pathology and device."""
    labels = {row.choice("Pathology", PATHOLOGY) for row in rows}
    devices = {row.required("Device") for row in rows}
    if len(labels) > 1 or len(devices) > 1:
        numbers = ", ".join(str(row.number) for row in rows)
        raise PublicDataError(f"{NAME} {rows[0].source}, rows {numbers}: Case {case} has more than one Pathology or Device")
    label, device = labels.pop(), devices.pop()
    images = tuple(_image(base, row) for row in rows)
    columns = {
        "scanner": device,
        "histology": joined(row.get("Histology") for row in rows),
        "histologic_type": joined(histologic_type(row.get("Histology"), label == 1) for row in rows),
        "birads": joined(row.get("BIRADS") for row in rows),
        "side": joined(row.get("Side") for row in rows),
    }
    return PublicCase(safe_id(case), label, images, device, columns=columns)


def _image(base: Path, row: Row) -> PublicImage:
    """An ``ID``'s image and mask, both of which must exist."""
    image_id = row.required("ID")
    image = require_file(base / "Images" / f"{image_id}.png", f"{NAME} {row.where} (ID {image_id}): image")
    mask = require_file(base / "Masks" / f"{image_id.replace('bus_', 'mask_', 1)}.png", f"{NAME} {row.where} (ID {image_id}): mask")
    return PublicImage(image, (mask,))
