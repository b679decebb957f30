"""BUS-UCLM (Vallez et al. 2025, Mendeley 7fvgj4jsp7): lesion malignancy from ``INFO.csv``.

Layout (``root`` is ``BUS-UCLM``, the long folder above it, or the folder the zip was unzipped into)::

    BUS-UCLM Breast ultrasound lesion segmentation dataset/
      BUS-UCLM/
        images/  ALWI_000.png ... WAQU_007.png
        masks/   the same names (RGB: green benign, red malignant, black normal; listed, not decoded)
        INFO.csv Image;Resolution;Label;Doppler;Marks;Combined   (';', UTF-8 with BOM, CRLF)

Label: ``Label``, Benign -> 0, Malignant -> 1 (``MALIGNANCY``); Normal images (no lesion) are left
out and counted in ``notes``. A patient with both benign and malignant images is a malignant case
whose benign images are left out (counted in ``notes``), so a case never mixes labels.
Grouping: the patient = the first 4 letters of the file name (``ALWI``), one case with all its images.
Center: "BUS-UCLM" (one site; scanner Siemens ACUSON S2000). Columns: ``doppler`` (``Doppler`` read
on its first letter, so the stray ``Y`` is ``yes``; a case's values joined by '&'), and
``authors_split`` (train/test of the authors' scripts: test patients COPE, ANFO, ELCO, CRCI, FLKA),
kept as a column, not as the official split (none is published with the data).
"""

from __future__ import annotations

from pathlib import Path

from simulation.public.cohort import MALIGNANCY, PublicCase, PublicDataError, PublicDataset, PublicImage
from simulation.public.files import Row, csv_rows, dropped, find_root, joined, make_dataset, require_file

NAME = "BUS-UCLM"
SCANNER = "Siemens ACUSON S2000"
TABLE = "INFO.csv"
COLUMNS = ("Image", "Label", "Doppler")
LABEL: dict[str, int | None] = {"normal": None, "benign": 0, "malignant": 1}
DOPPLER = {"y": "yes", "n": "no"}
AUTHORS_TEST = frozenset({"COPE", "ANFO", "ELCO", "CRCI", "FLKA"})


def read(root: Path, derived: Path) -> PublicDataset:
    """Read ``INFO.csv`` and reference its images and masks (``derived`` is not used)."""
    base = find_root(root, (TABLE, "images"), NAME)
    patients: dict[str, list[tuple[Row, int]]] = {}
    normals = 0
    for row in csv_rows(base / TABLE, COLUMNS, delimiter=";"):
        label = row.choice("Label", LABEL)
        if label is None:
            normals += 1
            continue
        patients.setdefault(_patient(row), []).append((row, label))
    cases = [_case(base, patient, rows) for patient, rows in sorted(patients.items())]
    mixed = sum(1 for rows in patients.values() for _, label in rows if label == 0 and any(lab == 1 for _, lab in rows))
    notes = [
        dropped(normals, f"normal images (no lesion) of {TABLE}"),
        dropped(mixed, "benign images of patients who also have a malignant lesion"),
    ]
    return make_dataset(NAME, MALIGNANCY, cases, base, scanner=SCANNER, notes=notes)


def _patient(row: Row) -> str:
    """The patient code: the first 4 letters of the file name."""
    code = row.required("Image")[:4]
    if len(code) < 4 or not code.isalpha():
        raise PublicDataError(f"{NAME} {row.where}: Image {row.get('Image')!r} does not start with a 4-letter patient code")
    return code


def _case(base: Path, patient: str, rows: list[tuple[Row, int]]) -> PublicCase:
    """One patient's lesion images (the malignant ones only, if it has both)."""
    label = max(label for _, label in rows)
    kept = [row for row, lab in rows if lab == label]
    images = []
    for row in kept:
        name = row.required("Image")
        image = require_file(base / "images" / name, f"{NAME} {row.where}: image")
        mask = require_file(base / "masks" / name, f"{NAME} {row.where}: mask")
        images.append(PublicImage(image, (mask,)))
    columns = {
        "doppler": joined(sorted({_doppler(row) for row in kept})),
        "authors_split": "test" if patient in AUTHORS_TEST else "train",
    }
    return PublicCase(patient, label, tuple(images), NAME, columns=columns)


def _doppler(row: Row) -> str:
    """``Doppler`` on its first letter: yes or no."""
    value = row.required("Doppler")
    if value[0].lower() not in DOPPLER:
        raise PublicDataError(f"{NAME} {row.where}: column 'Doppler' has {value!r}, not Yes or No")
    return DOPPLER[value[0].lower()]
