"""UDIAT Dataset B (Yap et al. 2017, UDIAT Sabadell): lesion malignancy from ``DatasetB.xlsx``.

Layout (``root`` is ``BUS`` / ``Dataset_B`` or a folder above it)::

    BUS/
      DatasetB.xlsx   sheet 'Hoja1': Image | Type | Diagnosis | (legend columns, ignored)
      original/       000001.png ... 000147.png, 000295.png ... 000310.png   (ids not contiguous)
      GT/             the same names (masks, must exist)

Label: ``Type``, Benign -> 0, Malignant -> 1 (``MALIGNANCY``); nothing is dropped (images of
``original/`` the sheet does not list are counted in ``notes``). ``Image`` is text ('000001'),
normalised with ``zfill(6)``. Grouping: no patient id, one case per image, id = the 6-digit id.
Center: "UDIAT-B" (one site; scanner Siemens ACUSON Sequoia C512). Columns: ``diagnosis`` (CYST, FA,
IDC, ...), ``histologic_type`` (IDC/ILC/DCIS/other for malignant lesions). No official split.
"""

from __future__ import annotations

from pathlib import Path

from simulation.public.cohort import MALIGNANCY, PublicCase, PublicDataset, PublicImage
from simulation.public.files import Row, dropped, files_in, find_root, histologic_type, make_dataset, require_file, xlsx_rows

NAME = "UDIAT-B"
SCANNER = "Siemens ACUSON Sequoia C512"
SPREADSHEET = "DatasetB.xlsx"
SHEET = "Hoja1"
COLUMNS = ("Image", "Type", "Diagnosis")
TYPE = {"benign": 0, "malignant": 1}


def read(root: Path, derived: Path) -> PublicDataset:
    """Read ``DatasetB.xlsx`` and reference its images and masks (``derived`` is not used)."""
    base = find_root(root, (SPREADSHEET, "original"), NAME)
    cases = [_case(base, row) for row in xlsx_rows(base / SPREADSHEET, SHEET, COLUMNS)]
    listed = {case.case_id for case in cases}
    unlisted = [p for p in files_in(base / "original", f"{NAME} images", (".png",)) if p.stem not in listed]
    return make_dataset(NAME, MALIGNANCY, cases, base, scanner=SCANNER, notes=[dropped(len(unlisted), f"images of {base / 'original'} not in {SPREADSHEET}")])


def _case(base: Path, row: Row) -> PublicCase:
    """One row's image (``original/{id}.png``) and its mask (``GT/{id}.png``)."""
    image_id = row.required("Image").zfill(6)
    where = f"{NAME} {row.where} (Image {image_id})"
    label = row.choice("Type", TYPE)
    image = require_file(base / "original" / f"{image_id}.png", f"{where}: image")
    mask = require_file(base / "GT" / f"{image_id}.png", f"{where}: mask")
    diagnosis = row.get("Diagnosis")
    columns = {"diagnosis": diagnosis, "histologic_type": histologic_type(diagnosis, label == 1)}
    return PublicCase(image_id, label, (PublicImage(image, (mask,)),), NAME, columns=columns)
