"""BCNB (Xu et al. 2021, Beijing Chao-Yang Hospital): axillary lymph-node status from the clinical spreadsheet.

Layout (``root`` is the BCNB folder, e.g. ``BCNB Dataset``, or a folder above it)::

    BCNB Dataset/
      patient-clinical-data.xlsx   sheet 'Sheet1': Patient ID | Age(years) | Tumour Size(cm) | Tumour Type | ER |
                                   PR | HER2 | HER2 Expression | Histological grading | Surgical | Ki67 |
                                   Molecular subtype | Number of lymph node metastases | ALN status
      dataset-splitting/           train_id.txt  val_id.txt  test_id.txt   (one id a line, CRLF)
      paper_patches/patches/<pid>/<pid>_<region>_<x>_<y>.jpg   or   patches/<pid>/...   (paper_patches.zip)
      WSIs/  1.jpg 1.json ...      (not read: the patches are the images)

Label: ``ALN status`` (``LYMPH_NODE_STATUS``), N0 -> 0, N+(1-2) and N+(>2) -> 1 (a full-width '＞'
is read as '>'); nothing is dropped. Grouping: ``Patient ID``, one case with all its patches as
images (a patient without patches is an error). Center: "BCNB" (one hospital). Official split:
``dataset-splitting/*.txt`` (every patient must be in exactly one). Columns: ``age``,
``tumor_size_mm`` (cm x 10), ``er``/``pr``/``her2`` (Positive 1, Negative 0), ``ki67`` (a fraction
given as percent: '0.4' -> 40), ``histologic_type`` (IDC, ILC, other), ``histologic_grade`` (1-3 or
'' where blank), ``her2_expression``, ``molecular_subtype``, ``aln_status`` (the 3 classes),
``n_metastases``. Patches are H&E tiles without scanner UI (``modality`` "pathology", ``crop`` "none").
"""

from __future__ import annotations

from pathlib import Path

from simulation.public.cohort import LYMPH_NODE_STATUS, PublicCase, PublicDataError, PublicDataset, PublicImage
from simulation.public.files import Row, files_in, find_root, histologic_type, make_dataset, number_text, require_dir, require_file, xlsx_rows

NAME = "BCNB"
SPREADSHEET = "patient-clinical-data.xlsx"
SHEET = "Sheet1"
SPLITS = ("train", "val", "test")
PATCH_FOLDERS = ("paper_patches/patches", "patches")
COLUMNS = (
    "Patient ID", "Age(years)", "Tumour Size(cm)", "Tumour Type", "ER", "PR", "HER2", "HER2 Expression",
    "Histological grading", "Ki67", "Molecular subtype", "Number of lymph node metastases", "ALN status",
)  # fmt: skip
ALN = {"n0": (0, "N0"), "n+(1-2)": (1, "N+(1-2)"), "n+(>2)": (1, "N+(>2)")}
POSITIVE = {"positive": "1", "negative": "0"}
GRADES = ("", "1", "2", "3")
PATCH_SUFFIXES = (".jpg", ".jpeg", ".png")


def read(root: Path, derived: Path) -> PublicDataset:
    """Read the clinical spreadsheet, the split files and every patient's patches (``derived`` is not used)."""
    base = find_root(root, (SPREADSHEET,), NAME)
    patches = _patches(base)
    splits = _splits(base)
    cases = [_case(row, patches, splits) for row in xlsx_rows(base / SPREADSHEET, SHEET, COLUMNS)]
    notes = [f"images are the tumour-region patches of {patches}"]
    return make_dataset(NAME, LYMPH_NODE_STATUS, cases, base, modality="pathology", crop="none", notes=notes)


def _patches(base: Path) -> Path:
    """The folder of per-patient patch folders: ``paper_patches/patches`` or ``patches``."""
    for name in PATCH_FOLDERS:
        if (base / name).is_dir():
            return base / name
    raise PublicDataError(f"{NAME}: no patch folder {' or '.join(str(base / n) for n in PATCH_FOLDERS)} (unzip paper_patches.zip there)")


def _splits(base: Path) -> dict[str, str]:
    """Patient id -> official split, from ``dataset-splitting/{split}_id.txt``."""
    folder = require_dir(base / "dataset-splitting", f"{NAME} split files")
    splits: dict[str, str] = {}
    for split in SPLITS:
        path = require_file(folder / f"{split}_id.txt", f"{NAME} split")
        try:
            tokens = path.read_text(encoding="utf-8-sig").split()  # CRLF, no final newline
        except (OSError, UnicodeDecodeError) as err:
            raise PublicDataError(f"{NAME} split file {path}: cannot be read: {err}") from err
        for token in tokens:
            if not token.isdigit():
                raise PublicDataError(f"{NAME} split file {path}: {token!r} is not a patient id")
            if splits.setdefault(token, split) != split:
                raise PublicDataError(f"{NAME} split file {path}: patient {token} is also in {splits[token]}_id.txt")
    return splits


def _case(row: Row, patches: Path, splits: dict[str, str]) -> PublicCase:
    """One patient: all its patches, its split and clinical columns."""
    patient = row.required("Patient ID")
    where = f"{NAME} {row.where} (Patient ID {patient})"
    label, status = row.choice("ALN status", ALN, lambda v: v.replace("＞", ">").replace(" ", "").lower())
    if patient not in splits:
        raise PublicDataError(f"{where}: in none of the split files dataset-splitting/{{train,val,test}}_id.txt")
    files = files_in(patches / patient, f"{where}: patches", PATCH_SUFFIXES)
    if not files:
        raise PublicDataError(f"{where}: patch folder {patches / patient} holds no patches")
    images = tuple(PublicImage(p.resolve()) for p in files)
    return PublicCase(patient, label, images, NAME, split=splits[patient], columns=_columns(row, where, status))


def _columns(row: Row, where: str, status: str) -> dict[str, str]:
    """The clinical columns under the manifest's names, and BCNB's own descriptors."""
    grade = row.get("Histological grading")
    if grade not in GRADES:
        raise PublicDataError(f"{where}: column 'Histological grading' has {grade!r}, not 1, 2, 3 or blank")
    ki67, at = row.get("Ki67"), f"{where}, column 'Ki67'"
    fraction = bool(ki67) and not ki67.endswith("%") and float(number_text(ki67, where=at)) <= 1  # '0.4'; '40' or '40%' is a percent already
    return {
        "age": number_text(row.get("Age(years)"), where=f"{where}, column 'Age(years)'"),
        "tumor_size_mm": number_text(row.get("Tumour Size(cm)"), 10, f"{where}, column 'Tumour Size(cm)'"),
        **{name: row.choice(column, POSITIVE) if row.get(column) else "" for name, column in (("er", "ER"), ("pr", "PR"), ("her2", "HER2"))},
        "ki67": number_text(ki67, 100 if fraction else 1, at),
        "histologic_type": histologic_type(row.get("Tumour Type"), malignant=True),
        "histologic_grade": grade,
        "her2_expression": row.get("HER2 Expression"),
        "molecular_subtype": row.get("Molecular subtype"),
        "aln_status": status,
        "n_metastases": number_text(row.get("Number of lymph node metastases"), where=f"{where}, column 'Number of lymph node metastases'"),
    }
