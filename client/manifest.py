"""Site manifest CSV: one row per image, validated row by row.

Input columns: ``image`` (a still: raster or DICOM) and ``video`` (a cine loop: a multi-frame DICOM
file or a folder of frames). A row needs at least one of them: a still model reads the loop's key
frame when the row has no ``image`` (``client/data.py``), a video model needs ``video``.

Optional per row, read by the multimodal tasks (``client/multimodal_data.py``): ``pathology`` (an H&E
micrograph or a folder of patch images), ``mammo_cc`` and ``mammo_mlo`` (the two mammography views,
DICOM or raster of any bit depth) and ``mammo_cc_mask`` / ``mammo_mlo_mask`` (each view's mass mask).
An empty cell means the case lacks that input; a multimodal model then reads what the case has.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from client.errors import SiteDataError

INPUT_COLUMNS = ("image", "video", "pathology")
MODALITY_COLUMNS = ("pathology", "mammo_cc", "mammo_mlo", "mammo_cc_mask", "mammo_mlo_mask")  # optional files per case
SPLITS = ("train", "val", "test")
CLINICAL_COLUMNS = (
    "age", "tumor_size_mm", "er", "pr", "her2", "ki67", "histologic_type", "histologic_grade",
)  # typed when present, without a site-config declaration (client/clinical.py)
RESERVED_COLUMNS = ("case_id", "label", *dict.fromkeys((*INPUT_COLUMNS, *MODALITY_COLUMNS)), "mask", "split", "scanner")


@dataclass(frozen=True)
class Case:
    """One manifest row: a case's image, label and optional mask, split, scanner and other columns."""

    case_id: str
    label: int
    row: int
    image: Path | None = None
    mask: Path | None = None
    video: Path | None = None  # a multi-frame DICOM file or a folder of frames
    pathology: Path | None = None  # an H&E micrograph or a folder of patches
    mammo_cc: Path | None = None  # craniocaudal mammogram
    mammo_mlo: Path | None = None  # mediolateral-oblique mammogram
    mammo_cc_mask: Path | None = None  # mass mask of the CC view
    mammo_mlo_mask: Path | None = None  # mass mask of the MLO view
    split: str | None = None
    scanner: str = ""
    clinical: dict[str, str] = field(default_factory=dict)  # every other column of the row: clinical values and descriptors


STILL_OR_LOOP = ("image", "video")  # the columns a still-image model reads (the loop's key frame without an image)


def read_manifest(path: Path, required_input: str | tuple[str, ...] = STILL_OR_LOOP) -> list[Case]:
    """Read and validate a manifest; errors name the file and the row (1-based, header = row 1).

    ``required_input`` is the column the reader needs, or columns of which every row needs one.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in reader.fieldnames or []]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise SiteDataError(f"manifest {path}: cannot be read: {err}", "manifest: cannot be read") from err
    _check_header(path, header, required_input)
    base = path.parent
    cases: list[Case] = []
    for index, raw in enumerate(rows, start=2):
        row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        cases.append(_parse_row(path, base, index, row, required_input))
    if not cases:
        raise SiteDataError(f"manifest {path}: no rows", "manifest: no rows")
    _check_cases(path, cases)
    return cases


def _check_header(path: Path, header: list[str], required_input: str | tuple[str, ...]) -> None:
    """Require case_id, label and the task's input column (one of them, for several)."""
    for column in ("case_id", "label"):
        if column not in header:
            raise SiteDataError(f"manifest {path}: missing column '{column}'", f"manifest: missing column '{column}'")
    if not any(c in header for c in INPUT_COLUMNS):
        raise SiteDataError(
            f"manifest {path}: needs at least one input column ({', '.join(INPUT_COLUMNS)})",
            "manifest: no input column",
        )
    wanted = (required_input,) if isinstance(required_input, str) else required_input
    if not any(c in header for c in wanted):
        named = " or ".join(f"'{c}'" for c in wanted)
        raise SiteDataError(f"manifest {path}: this task reads the {named} column, which is missing", f"manifest: missing column {named}")


def _parse_row(path: Path, base: Path, index: int, row: dict[str, str], required_input: str | tuple[str, ...]) -> Case:
    """Validate one row's id, label, split and file paths."""
    where = f"manifest {path}, row {index}"
    case_id = row.get("case_id", "")
    if not case_id:
        raise SiteDataError(f"{where}: empty case_id", f"manifest row {index}: empty case_id")
    label = row.get("label", "")
    if label not in ("0", "1"):
        raise SiteDataError(
            f"{where} (case {case_id}): label {label!r} is not 0 or 1", f"manifest row {index}: label is not 0 or 1"
        )
    split = row.get("split") or None
    if split is not None and split not in SPLITS:
        raise SiteDataError(
            f"{where} (case {case_id}): split {split!r} is not one of {', '.join(SPLITS)}",
            f"manifest row {index}: invalid split",
        )
    wanted = (required_input,) if isinstance(required_input, str) else required_input
    if not any(row.get(column, "") for column in wanted):
        named = " and ".join(f"'{c}'" for c in wanted)
        raise SiteDataError(f"{where} (case {case_id}): empty {named}", f"manifest row {index}: empty {named}")
    files: dict[str, Path | None] = {}
    for column in (*dict.fromkeys((*wanted, "image", "video", *MODALITY_COLUMNS)), "mask"):
        value = row.get(column, "")
        if not value:
            files[column] = None
            continue
        file = (base / value).resolve()
        if not file.exists():
            raise SiteDataError(
                f"{where} (case {case_id}): {column} file {file} not found",
                f"manifest row {index}: {column} file not found",
            )
        files[column] = file
    return Case(
        case_id=case_id,
        label=int(label),
        row=index,
        image=files.get("image"),
        mask=files.get("mask"),
        video=files.get("video"),
        **{column: files.get(column) for column in MODALITY_COLUMNS},
        split=split,
        scanner=row.get("scanner", ""),
        clinical={c: v for c, v in row.items() if c not in RESERVED_COLUMNS},
    )


def _check_cases(path: Path, cases: list[Case]) -> None:
    """A case's rows must agree on label and split (one patient never straddles splits)."""
    seen: dict[str, Case] = {}
    for case in cases:
        first = seen.setdefault(case.case_id, case)
        if first is case:
            continue
        if first.split != case.split:
            raise SiteDataError(
                f"manifest {path}: case {case.case_id} is in split {first.split!r} (row {first.row}) "
                f"and in split {case.split!r} (row {case.row}); a case must lie in one split",
                f"manifest rows {first.row} and {case.row}: one case in two splits",
            )
        if first.label != case.label:
            raise SiteDataError(
                f"manifest {path}: case {case.case_id} has label {first.label} (row {first.row}) "
                f"and label {case.label} (row {case.row})",
                f"manifest rows {first.row} and {case.row}: one case with two labels",
            )
