"""What every public-dataset adapter shares: finding the dataset's root, reading its tables, checking its files.

Every problem is a ``PublicDataError`` whose message names the file, folder or column (and the row
for a row's problem); no adapter lets a ``KeyError`` or a library's traceback through.
"""

from __future__ import annotations

import csv
import math
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar


from simulation.public.cohort import Endpoint, PublicCase, PublicDataError, PublicDataset

T = TypeVar("T")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
SEARCH_DEPTH = 4  # a root may be passed this many folders above the dataset's own root (BUS_UC nests 3)
_SEARCH_LIMIT = 5000  # folders looked at before giving up (a root passed far too high)
_CASE_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


# ----------------------------------------------------------------------------------------------------------
# folders and files


def find_root(root: Path, markers: Sequence[str], dataset: str, depth: int = SEARCH_DEPTH) -> Path:
    """The folder at or under ``root`` (shallowest first) that holds every marker (a glob, e.g. ``'Images'``, ``'*.npz'``).

    A user passes the dataset's own root or a folder above it (the one it was unzipped into); two
    folders at the same depth that both match are refused as ambiguous.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise PublicDataError(f"{dataset}: {root} is not a folder")
    level, seen = [root.resolve()], 0
    for _ in range(depth + 1):
        found = [folder for folder in level if _holds(folder, markers)]
        if len(found) > 1:
            raise PublicDataError(f"{dataset}: {root} holds the dataset twice ({', '.join(map(str, found))}); pass one of them")
        if found:
            return found[0]
        level = [child for folder in level for child in _subfolders(folder)]
        seen += len(level)
        if not level or seen > _SEARCH_LIMIT:
            break
    raise PublicDataError(
        f"{dataset}: no folder at or under {root} (down to {depth} levels) holds {', '.join(repr(m) for m in markers)}; "
        "pass the folder the dataset was unzipped into"
    )


def _holds(folder: Path, markers: Sequence[str]) -> bool:
    """Whether ``folder`` holds a match of every marker glob."""
    return all(next(folder.glob(marker), None) is not None for marker in markers)


def _subfolders(folder: Path) -> list[Path]:
    """The visible subfolders of ``folder``, sorted (unreadable folders give none)."""
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def require_dir(path: Path, what: str) -> Path:
    """``path`` if it is a folder, else an error naming it."""
    if not path.is_dir():
        raise PublicDataError(f"{what}: folder {path} not found")
    return path


def require_file(path: Path, what: str) -> Path:
    """``path`` resolved if it is a file, else an error naming it."""
    if not path.is_file():
        raise PublicDataError(f"{what}: file {path} not found")
    return path.resolve()


def files_in(folder: Path, what: str, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[Path]:
    """The files of ``folder`` with one of ``suffixes`` (any case), in natural order; the folder must exist."""
    require_dir(folder, what)
    wanted = tuple(s.lower() for s in suffixes)
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in wanted), key=lambda p: natural_key(p.name))


def same_name(folder: Path, image: Path, what: str) -> Path:
    """The file of ``folder`` named like ``image`` (the same stem with another image suffix if not the same name)."""
    exact = folder / image.name
    if exact.is_file():
        return exact.resolve()
    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / f"{image.stem}{suffix}", folder / f"{image.stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate.resolve()
    raise PublicDataError(f"{what}: mask {exact} of image {image} not found")


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders digit runs by value: ``benign (2)`` before ``benign (10)``."""
    return tuple((0, int(part)) if part.isdigit() else (1, part.lower()) for part in re.split(r"(\d+)", text) if part)


# ----------------------------------------------------------------------------------------------------------
# spreadsheets


@dataclass(frozen=True)
class Row:
    """One data row of a spreadsheet or CSV: its file, 1-based row number (header = 1) and text cells."""

    source: Path
    number: int
    values: Mapping[str, str]

    @property
    def where(self) -> str:
        """``file, row N`` for error messages."""
        return f"{self.source}, row {self.number}"

    def get(self, column: str) -> str:
        """The cell's text ('' when empty)."""
        return self.values.get(column, "")

    def required(self, column: str) -> str:
        """The cell's text; an empty cell is an error naming the row and column."""
        value = self.get(column)
        if not value:
            raise PublicDataError(f"{self.where}: column '{column}' is empty")
        return value

    def choice(self, column: str, vocabulary: Mapping[str, T], normalise: Callable[[str], str] = str.lower) -> T:
        """The cell's value looked up in ``vocabulary`` by its ``normalise``d text (lower case unless told otherwise)."""
        value = self.required(column)
        key = normalise(value)
        if key not in vocabulary:
            raise PublicDataError(f"{self.where}: column '{column}' has {value!r}, not one of {', '.join(vocabulary)}")
        return vocabulary[key]


def xlsx_rows(path: Path, sheet: str, columns: Sequence[str], fallback_first: bool = False) -> list[Row]:
    """The data rows of one sheet (header in row 1) with the ``columns`` it must have; rows empty in all of them are skipped.

    Read with ``openpyxl.load_workbook(read_only=True, data_only=True)``. With ``fallback_first``
    a workbook without ``sheet`` is read from its first sheet.
    """
    import openpyxl  # noqa: PLC0415 (only for .xlsx datasets: `axilla-simulate` starts without it)
    from openpyxl.utils.exceptions import InvalidFileException  # noqa: PLC0415

    require_file(path, "spreadsheet")
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (OSError, InvalidFileException, zipfile.BadZipFile, KeyError, ValueError) as err:
        raise PublicDataError(f"spreadsheet {path}: cannot be read: {err}") from err
    try:
        if sheet in book.sheetnames:
            table = book[sheet]
        elif fallback_first and book.sheetnames:
            table = book[book.sheetnames[0]]
        else:
            raise PublicDataError(f"spreadsheet {path}: no sheet '{sheet}' (it has {', '.join(book.sheetnames) or 'none'})")
        cells = [[cell_text(v) for v in row] for row in table.iter_rows(values_only=True)]
    finally:
        book.close()
    where = f"spreadsheet {path}, sheet '{table.title}'"
    return _rows(path, where, cells, columns)


def csv_rows(path: Path, columns: Sequence[str], delimiter: str = ",") -> list[Row]:
    """The data rows of a CSV (UTF-8, a BOM allowed, any line ending) with the ``columns`` it must have."""
    require_file(path, "table")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            cells = [[c.strip() for c in row] for row in csv.reader(handle, delimiter=delimiter)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise PublicDataError(f"table {path}: cannot be read: {err}") from err
    return _rows(path, f"table {path}", cells, columns)


def _rows(path: Path, where: str, cells: list[list[str]], columns: Sequence[str]) -> list[Row]:
    """Rows as dictionaries keyed by the header's non-blank names, checked for the required columns."""
    if not cells:
        raise PublicDataError(f"{where}: empty, expected a header with {', '.join(columns)}")
    header = cells[0]
    index = {name: i for i, name in reversed(list(enumerate(header))) if name}
    missing = [c for c in columns if c not in index]
    if missing:
        raise PublicDataError(f"{where}: missing column(s) {', '.join(repr(c) for c in missing)} (header: {', '.join(h for h in header if h)})")
    rows = []
    for number, raw in enumerate(cells[1:], start=2):
        values = {name: (raw[i] if i < len(raw) else "") for name, i in index.items()}
        if any(values[c] for c in columns):
            rows.append(Row(path, number, values))
    if not rows:
        raise PublicDataError(f"{where}: no data rows")
    return rows


def cell_text(value: object) -> str:
    """A cell as text: '' for empty, integral numbers without '.0', other floats in their shortest form."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value).strip()


# ----------------------------------------------------------------------------------------------------------
# values


def number_text(text: str, scale: float = 1.0, where: str = "") -> str:
    """A numeric cell times ``scale``, rounded to 2 decimals, without trailing zeros ('' stays ''): '2.2999999999999998' x 10 -> '23'."""
    if not text:
        return ""
    try:
        value = float(text.rstrip("%").strip()) * scale
    except ValueError as err:
        raise PublicDataError(f"{where}: {text!r} is not a number") from err
    return f"{round(value, 2):g}"


def joined(values: Iterable[str]) -> str:
    """The distinct non-empty values in first-seen order, joined by '&' (the datasets' own multi-value separator)."""
    return "&".join(dict.fromkeys(v for v in values if v))


_HISTOLOGIC_TYPES = {
    "idc": "IDC", "invasive ductal carcinoma": "IDC",
    "ilc": "ILC", "invasive lobular carcinoma": "ILC",
    "dcis": "DCIS", "ductal carcinoma in situ": "DCIS",
}  # fmt: skip
_UNKNOWN = {"", "unk", "unknown", "not available", "not applicable"}


def histologic_type(text: str, malignant: bool) -> str:
    """The manifest's ``histologic_type`` (IDC, ILC, DCIS, other) of a malignant lesion's histology; '' for benign or unknown."""
    key = text.strip().lower()
    if not malignant or key in _UNKNOWN:
        return ""
    return _HISTOLOGIC_TYPES.get(key, "other")


def safe_id(text: str) -> str:
    """A case id of letters, digits, '_', '-' and '.': other runs become '-' (``benign (12)`` -> ``benign-12``)."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", text).strip("-")


# ----------------------------------------------------------------------------------------------------------
# the result


def make_dataset(
    name: str,
    endpoint: Endpoint,
    cases: list[PublicCase],
    source: Path,
    *,
    scanner: str = "",
    modality: str = "image",
    crop: str = "auto",
    notes: Iterable[str] = (),
) -> PublicDataset:
    """The ``PublicDataset``, its case ids checked (valid, unique); no cases at all is an error."""
    seen: set[str] = set()
    for case in cases:
        if not _CASE_ID.match(case.case_id):
            raise PublicDataError(f"{name} {source}: case id {case.case_id!r} holds characters other than letters, digits, '_', '-', '.'")
        if case.case_id in seen:
            raise PublicDataError(f"{name} {source}: case id {case.case_id!r} occurs twice")
        seen.add(case.case_id)
    if not cases:
        raise PublicDataError(f"{name} {source}: no usable cases")
    return PublicDataset(name=name, endpoint=endpoint, cases=cases, scanner=scanner, modality=modality, crop=crop, notes=[n for n in notes if n])


def dropped(count: int, what: str) -> str:
    """The note for ``count`` left-out images ('' when none)."""
    return f"{count} {what} left out" if count else ""
