"""BrEaST-Lesions_USG (Pawłowska et al. 2024, TCIA): lesion malignancy from the clinical spreadsheet.

Layout (``root`` is the folder holding both downloads, or the images folder with the spreadsheet
in it or next to it)::

    BrEaST-Lesions_USG-images_and_masks/        (flat: images and masks together)
      case001.png  case001_tumor.png  case022.png  case022_tumor.png  case022_other1.png ...
    BrEaST-Lesions-USG-clinical-data-Dec-15-2023.xlsx
      sheet 'BrEaST-Lesions-USG clinical dat' (else the first sheet), 21 columns from CaseID to Classification

Label: ``Classification``, benign -> 0, malignant -> 1 (``MALIGNANCY``); ``normal`` (no lesion, no
mask) is left out and counted in ``notes``. Masks: ``Mask_tumor_filename`` (required for a lesion)
and ``Mask_other_filename``, each cell split on ``&``; every named file must exist.
Grouping: ``CaseID`` (one image per patient). Center: "BrEaST" (one oncology centre; the scanner per
image is not published, so no scanner). Columns: ``age`` ('' for ``not available``), ``birads`` (read
as text: 2, 4a, ...), ``pixel_size_cm`` (``Pixel_size``), ``diagnosis`` (free text). No official split.
"""

from __future__ import annotations

from pathlib import Path

from simulation.public.cohort import MALIGNANCY, PublicCase, PublicDataError, PublicDataset, PublicImage
from simulation.public.files import Row, dropped, find_root, make_dataset, number_text, require_file, safe_id, xlsx_rows

NAME = "BrEaST"
IMAGES = "BrEaST-Lesions_USG-images_and_masks"
SPREADSHEET = "BrEaST-Lesions-USG-clinical-data*.xlsx"
SHEET = "BrEaST-Lesions-USG clinical dat"
COLUMNS = (
    "CaseID", "Image_filename", "Mask_tumor_filename", "Mask_other_filename", "Pixel_size", "Age", "BIRADS", "Diagnosis",
    "Classification",
)  # fmt: skip
CLASSIFICATION: dict[str, int | None] = {"benign": 0, "malignant": 1, "normal": None}


def read(root: Path, derived: Path) -> PublicDataset:
    """Read the clinical spreadsheet and reference the images and masks it names (``derived`` is not used)."""
    sheet, images = _locate(Path(root))
    cases, normals = [], 0
    for row in xlsx_rows(sheet, SHEET, COLUMNS, fallback_first=True):
        label = row.choice("Classification", CLASSIFICATION)
        if label is None:
            normals += 1
            continue
        cases.append(_case(images, row, label))
    return make_dataset(NAME, MALIGNANCY, cases, images, notes=[dropped(normals, f"normal cases (no lesion) of {sheet.name}")])


def _locate(root: Path) -> tuple[Path, Path]:
    """The spreadsheet and the images folder: both under ``root``, or ``root`` is the images folder."""
    if root.is_dir() and next(root.glob("case*.png"), None) is not None:
        for folder in (root, root.parent):
            found = sorted(folder.glob(SPREADSHEET))
            if found:
                return found[-1].resolve(), root.resolve()
        raise PublicDataError(f"{NAME}: no {SPREADSHEET} in {root} or {root.parent} (the clinical data, a separate download)")
    base = find_root(root, (SPREADSHEET,), NAME)
    folders = sorted(p for p in base.glob(f"{IMAGES}*") if p.is_dir())
    if not folders:
        raise PublicDataError(f"{NAME}: folder {base / IMAGES} not found (the images and masks, a separate download)")
    return sorted(base.glob(SPREADSHEET))[-1], folders[0]


def _case(images: Path, row: Row, label: int) -> PublicCase:
    """One row's case: its image and every mask it names."""
    case_id = row.required("CaseID")
    where = f"{NAME} {row.where} (CaseID {case_id})"
    image = require_file(images / row.required("Image_filename"), f"{where}: Image_filename")
    tumour = _names(row, "Mask_tumor_filename")
    if not tumour:
        raise PublicDataError(f"{where}: column 'Mask_tumor_filename' is empty for a {row.get('Classification')} case")
    masks = tuple(require_file(images / name, f"{where}: {column}") for column in ("Mask_tumor_filename", "Mask_other_filename") for name in _names(row, column))
    age = row.get("Age")
    columns = {
        "age": "" if age.lower() == "not available" else number_text(age, where=f"{where}, column 'Age'"),
        "birads": row.get("BIRADS"),
        "pixel_size_cm": row.get("Pixel_size"),
        "diagnosis": "" if row.get("Diagnosis").lower() == "not applicable" else row.get("Diagnosis"),
    }
    return PublicCase(safe_id(case_id), label, (PublicImage(image, masks),), NAME, columns=columns)


def _names(row: Row, column: str) -> list[str]:
    """A filename cell split on '&'."""
    return [name.strip() for name in row.get(column).split("&") if name.strip()]
