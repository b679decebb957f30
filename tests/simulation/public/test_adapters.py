"""Every public-dataset adapter on a tiny replica of its published layout: counts, labels, grouping, masks, quirks, errors."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import openpyxl
import pytest
from PIL import Image

from simulation.public.adapters import ADAPTERS, read_dataset
from simulation.public.cohort import LYMPH_NODE_STATUS, MALIGNANCY, PublicCase, PublicDataError, PublicDataset
from tests.simulation.public import replicas

N = 3
WRITERS: dict[str, Callable[[Path, int], Path]] = {
    "busi": replicas.write_busi,
    "bus-bra": replicas.write_bus_bra,
    "breast-lesions-usg": replicas.write_breast_lesions_usg,
    "udiat-b": replicas.write_udiat_b,
    "bus-uclm": replicas.write_bus_uclm,
    "bus-uc": replicas.write_bus_uc,
    "qamebi": replicas.write_qamebi,
    "breastmnist": replicas.write_breastmnist,
    "bcnb": replicas.write_bcnb,
}
INNER_ROOTS = {  # the dataset's own root folder under what a replica returns
    "busi": "Dataset_BUSI_with_GT",
    "bus-bra": "BUSBRA",
    "breast-lesions-usg": "BrEaST-Lesions_USG-images_and_masks",
    "udiat-b": "BUS",
    "bus-uclm": "BUS-UCLM Breast ultrasound lesion segmentation dataset/BUS-UCLM",
    "bus-uc": "BUS_UC/BUS_UC/BUS_UC",
    "qamebi": ".",
    "breastmnist": "breastmnist.npz",
    "bcnb": "BCNB Dataset",
}
CENTERS = {
    "busi": "BUSI", "breast-lesions-usg": "BrEaST", "udiat-b": "UDIAT-B", "bus-uclm": "BUS-UCLM", "bus-uc": "BUS_UC",
    "qamebi": "QAMEBI", "breastmnist": "BreastMNIST", "bcnb": "BCNB",
}  # fmt: skip


def _read(name: str, root: Path, tmp_path: Path) -> PublicDataset:
    """Read a replica with the CLI's entry point."""
    return read_dataset(name, root, tmp_path / "_derived" / name)


def _cases(data: PublicDataset) -> dict[str, PublicCase]:
    """The cases by id."""
    return {case.case_id: case for case in data.cases}


def _tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` by relative path, with its content's hash."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _raises(match: str, name: str, root: Path, tmp_path: Path) -> str:
    """Read and expect a PublicDataError whose message holds ``match`` (literally); return the message."""
    with pytest.raises(PublicDataError) as info:
        _read(name, root, tmp_path)
    assert match in str(info.value), str(info.value)
    return str(info.value)


def _edit_sheet(path: Path, sheet: str, edit: Callable[[openpyxl.worksheet.worksheet.Worksheet], None]) -> None:
    """Change one sheet of a workbook in place."""
    book = openpyxl.load_workbook(path)
    edit(book[sheet])
    book.save(path)


def _column(sheet: openpyxl.worksheet.worksheet.Worksheet, header: str) -> int:
    """The 1-based index of a header cell."""
    return next(cell.column for cell in sheet[1] if cell.value == header)


def _set(sheet: openpyxl.worksheet.worksheet.Worksheet, row: int, header: str, value: object) -> None:
    """Set one cell (``None`` empties it) of the column under ``header``."""
    sheet.cell(row, _column(sheet, header)).value = value


# ----------------------------------------------------------------------------------------------------------
# all adapters


def test_the_registry_names_every_dataset_and_refuses_unknown_names_and_roots(tmp_path: Path) -> None:
    """ADAPTERS holds the nine CLI names; read_dataset refuses an unknown name (listing the known) and a missing root."""
    names = ("busi", "bus-bra", "breast-lesions-usg", "udiat-b", "bus-uclm", "bus-uc", "qamebi", "breastmnist", "bcnb")
    assert tuple(ADAPTERS) == tuple(WRITERS) == names
    with pytest.raises(PublicDataError, match="unknown dataset 'inbreast'; known: busi, bus-bra") as info:
        read_dataset("inbreast", tmp_path, tmp_path)
    assert "bcnb" in str(info.value)
    with pytest.raises(PublicDataError, match="does not exist"):
        read_dataset("busi", tmp_path / "nowhere", tmp_path)
    root = replicas.write_bus_bra(tmp_path, N)
    assert read_dataset("BUS_BRA", root, tmp_path).name == "BUS-BRA"


@pytest.mark.parametrize("name", list(WRITERS))
def test_every_adapter_reads_its_replica_in_place_from_its_root_or_the_folder_above(name: str, tmp_path: Path) -> None:
    """Both labels, valid unique ids, existing absolute files, the natural center; the user's files are left as they were."""
    root = WRITERS[name](tmp_path, N)
    before = _tree(root)
    outer, inner = _read(name, root, tmp_path), _read(name, root / INNER_ROOTS[name], tmp_path)
    assert _tree(root) == before
    assert [(c.case_id, c.label, c.images) for c in outer.cases] == [(c.case_id, c.label, c.images) for c in inner.cases]
    assert {c.label for c in outer.cases} == {0, 1}
    assert outer.endpoint == (LYMPH_NODE_STATUS if name == "bcnb" else MALIGNANCY)
    ids = [c.case_id for c in outer.cases]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[A-Za-z0-9_.-]+", i) for i in ids)
    for case in outer.cases:
        assert case.images and all(isinstance(v, str) for v in case.columns.values())
        for path in [p for image in case.images for p in (image.path, *image.masks)]:
            assert path.is_absolute() and path == path.resolve() and path.is_file()
        if name in CENTERS:
            assert case.center == CENTERS[name]
        if name not in ("breastmnist", "bcnb"):
            assert all(image.masks for image in case.images)
            assert case.split is None


def test_a_root_without_the_dataset_is_an_error_naming_what_was_looked_for(tmp_path: Path) -> None:
    """An empty folder: the message names the marker files or folders the adapter looked for."""
    for name, marker in (("busi", "'benign'"), ("bus-bra", "'bus_data.csv'"), ("bcnb", "'patient-clinical-data.xlsx'"), ("qamebi", "Benign Image.bmp")):
        _raises(marker, name, tmp_path, tmp_path)


# ----------------------------------------------------------------------------------------------------------
# BUSI


def test_busi_lists_every_mask_of_an_image_and_drops_the_normals(tmp_path: Path) -> None:
    """``_mask``, ``_mask_1``, ``_mask_2`` in order; ids made safe; normals left out and counted; scanner GE LOGIQ E9."""
    data = _read("busi", replicas.write_busi(tmp_path, N), tmp_path)
    cases = _cases(data)
    assert sorted(cases) == sorted(["benign-1", "benign-2", "benign-3", "benign-4", "benign-195", "malignant-1", "malignant-2", "malignant-3", "malignant-53"])
    assert [c.label for c in data.cases] == [0] * 5 + [1] * 4
    assert [m.name for m in cases["benign-195"].images[0].masks] == ["benign (195)_mask.png", "benign (195)_mask_1.png", "benign (195)_mask_2.png"]
    assert [m.name for m in cases["benign-4"].images[0].masks] == ["benign (4)_mask.png", "benign (4)_mask_1.png"]
    assert [m.name for m in cases["malignant-53"].images[0].masks] == ["malignant (53)_mask.png", "malignant (53)_mask_1.png"]
    assert [m.name for m in cases["benign-1"].images[0].masks] == ["benign (1)_mask.png"]
    assert cases["benign-1"].images[0].path.name == "benign (1).png"  # 'benign (1)' -> benign-1
    assert not any(c.case_id.startswith("normal") for c in data.cases)
    assert data.notes == [f"2 normal images (no lesion) of {tmp_path.resolve() / 'busi/Dataset_BUSI_with_GT/normal'} left out"]
    assert data.scanner == "GE LOGIQ E9"


def test_busi_errors_name_the_missing_mask_and_the_empty_folder(tmp_path: Path) -> None:
    """A missing ``_mask.png`` and a class folder without images."""
    root = replicas.write_busi(tmp_path, N)
    (root / "Dataset_BUSI_with_GT/benign/benign (2)_mask.png").unlink()
    _raises("benign (2)_mask.png", "busi", root, tmp_path)
    for path in (root / "Dataset_BUSI_with_GT/malignant").iterdir():
        path.unlink()
    (root / "Dataset_BUSI_with_GT/benign/benign (2).png").unlink()
    _raises("holds no images", "busi", root, tmp_path)


# ----------------------------------------------------------------------------------------------------------
# BUS-BRA


def test_bus_bra_groups_by_case_and_takes_the_device_as_center(tmp_path: Path) -> None:
    """Dual-view images in one case; the 4 devices as centers and scanners; histology, BIRADS and side columns."""
    data = _read("bus-bra", replicas.write_bus_bra(tmp_path, N), tmp_path)
    cases = _cases(data)
    assert list(cases) == ["1", "6", "11", "16", "21", "26"]
    assert [c.label for c in data.cases] == [0, 0, 0, 1, 1, 1]
    assert [i.path.name for i in cases["1"].images] == ["bus_0001-l.png", "bus_0001-r.png"]
    assert [m.name for i in cases["1"].images for m in i.masks] == ["mask_0001-l.png", "mask_0001-r.png"]
    assert [i.path.name for i in cases["6"].images] == ["bus_0006-s.png"]
    assert [c.center for c in data.cases] == [*replicas.BUS_BRA_DEVICES[:N]] * 2
    assert all(c.columns["scanner"] == c.center for c in data.cases)
    assert cases["1"].columns == {"scanner": "GE Logiq 7 @10-14MHz", "histology": "fibroadenoma", "histologic_type": "", "birads": "2", "side": "left&right"}
    assert cases["21"].columns["histologic_type"] == "IDC" and cases["16"].columns["histology"] == "invasive lobular carcinoma"
    assert cases["6"].columns["side"] == "single"
    with Image.open(cases["1"].images[0].masks[0]) as mask:
        assert mask.mode == "1"  # the published masks are 1-bit PNGs


def test_bus_bra_errors_name_the_row_column_and_file(tmp_path: Path) -> None:
    """An unknown Pathology, a case with two pathologies, a missing mask, a missing column."""
    root = replicas.write_bus_bra(tmp_path, N)
    table = root / "BUSBRA/bus_data.csv"
    text = table.read_text(encoding="utf-8")
    table.write_text(text.replace("bus_0006-s,6,cyst,benign", "bus_0006-s,6,cyst,unclear"), encoding="utf-8")
    message = _raises("row 4: column 'Pathology' has 'unclear'", "bus-bra", root, tmp_path)
    assert str(table) in message
    table.write_text(text.replace("bus_0001-r,1,fibroadenoma,benign", "bus_0001-r,1,fibroadenoma,malignant"), encoding="utf-8")
    _raises("Case 1 has more than one Pathology or Device", "bus-bra", root, tmp_path)
    table.write_text(text, encoding="utf-8")
    (root / "BUSBRA/Masks/mask_0011-r.png").unlink()
    _raises("mask_0011-r.png not found", "bus-bra", root, tmp_path)
    table.write_text(text.replace("Device", "Scanner", 1), encoding="utf-8")
    _raises("missing column(s) 'Device'", "bus-bra", root, tmp_path)


# ----------------------------------------------------------------------------------------------------------
# BrEaST-Lesions_USG


def test_breast_joins_masks_reads_mixed_cells_and_drops_the_normal(tmp_path: Path) -> None:
    """'&'-joined other masks after the tumour mask; BIRADS 2 and 4a as text; 'not available' age is empty; case045 (normal) left out."""
    root = replicas.write_breast_lesions_usg(tmp_path, N)
    data = _read("breast-lesions-usg", root, tmp_path)
    cases = _cases(data)
    assert list(cases) == ["1", "22", "2", "3", "4", "5"]
    assert [c.label for c in data.cases] == [0, 1, 0, 1, 0, 1]
    assert [m.name for m in cases["22"].images[0].masks] == ["case022_tumor.png", "case022_other1.png", "case022_other2.png"]
    assert [m.name for m in cases["1"].images[0].masks] == ["case001_tumor.png"]
    assert {c.columns["birads"] for c in data.cases} == {"2", "3", "5", "4a", "4c"}
    assert cases["2"].columns["age"] == "" and cases["1"].columns["age"] == "40"
    assert cases["1"].columns["pixel_size_cm"] == "0.0078125" and cases["2"].columns["pixel_size_cm"] == "0.006944444"
    assert cases["22"].columns["diagnosis"] == "invasive ductal carcinoma"
    assert "45" not in cases and data.notes == ["1 normal cases (no lesion) of BrEaST-Lesions-USG-clinical-data-Dec-15-2023.xlsx left out"]
    assert data.scanner == ""


def test_breast_reads_the_first_sheet_when_the_named_one_is_absent(tmp_path: Path) -> None:
    """A workbook whose data sheet has another name is read from its first sheet, its columns still required."""
    root = replicas.write_breast_lesions_usg(tmp_path, N)
    sheet = root / "BrEaST-Lesions-USG-clinical-data-Dec-15-2023.xlsx"
    _edit_sheet(sheet, "BrEaST-Lesions-USG clinical dat", lambda s: setattr(s, "title", "Sheet1"))
    assert len(_read("breast-lesions-usg", root, tmp_path).cases) == 2 * N
    _edit_sheet(sheet, "Sheet1", lambda s: _set(s, 1, "Classification", "Class"))
    _raises("missing column(s) 'Classification'", "breast-lesions-usg", root, tmp_path)


def test_breast_errors_name_the_mask_the_row_and_the_label(tmp_path: Path) -> None:
    """A named other mask that is absent, an empty CaseID, an unknown Classification."""
    root = replicas.write_breast_lesions_usg(tmp_path, N)
    sheet = root / "BrEaST-Lesions-USG-clinical-data-Dec-15-2023.xlsx"
    other = root / "BrEaST-Lesions_USG-images_and_masks/case022_other2.png"
    kept = other.read_bytes()
    other.unlink()
    _raises("case022_other2.png not found", "breast-lesions-usg", root, tmp_path)
    other.write_bytes(kept)
    _edit_sheet(sheet, "BrEaST-Lesions-USG clinical dat", lambda s: _set(s, 3, "CaseID", None))
    _raises("row 3: column 'CaseID' is empty", "breast-lesions-usg", root, tmp_path)
    _edit_sheet(sheet, "BrEaST-Lesions-USG clinical dat", lambda s: (_set(s, 3, "CaseID", 22), _set(s, 2, "Classification", "suspicious")))
    _raises("row 2: column 'Classification' has 'suspicious'", "breast-lesions-usg", root, tmp_path)


# ----------------------------------------------------------------------------------------------------------
# UDIAT Dataset B


def test_udiat_reads_text_ids_that_are_not_contiguous(tmp_path: Path) -> None:
    """'000001' stored as text and a number both give 000001; ids jump to 000295; legend columns and rows ignored."""
    root = replicas.write_udiat_b(tmp_path, N)
    sheet = root / "BUS/DatasetB.xlsx"
    book = openpyxl.load_workbook(sheet)
    assert book["Hoja1"]["A2"].data_type == "s" and book["Hoja1"]["F1"].value == "Llegend"
    assert book["Hoja1"].max_row == 8  # the 7-row legend runs past the 6 data rows
    data = _read("udiat-b", root, tmp_path)
    cases = _cases(data)
    assert list(cases) == ["000001", "000002", "000003", "000295", "000296", "000297"]
    assert [c.label for c in data.cases] == [0, 1, 0, 1, 0, 1]
    assert cases["000295"].images[0].masks[0] == (root / "BUS/GT/000295.png").resolve()
    assert cases["000002"].columns == {"diagnosis": "IDC", "histologic_type": "IDC"}
    assert cases["000001"].columns == {"diagnosis": "CYST", "histologic_type": ""}
    assert data.scanner == "Siemens ACUSON Sequoia C512" and data.notes == []
    _edit_sheet(sheet, "Hoja1", lambda s: _set(s, 2, "Image", 1))
    assert _cases(_read("udiat-b", root, tmp_path)).keys() == cases.keys()


def test_udiat_errors_name_the_mask_the_label_and_the_sheet(tmp_path: Path) -> None:
    """A missing GT mask, an unknown Type, a missing image listed in the sheet, a workbook without Hoja1."""
    root = replicas.write_udiat_b(tmp_path, N)
    sheet = root / "BUS/DatasetB.xlsx"
    (root / "BUS/GT/000296.png").unlink()
    _raises("GT/000296.png not found", "udiat-b", root, tmp_path)
    (root / "BUS/original/000296.png").unlink()
    _raises("original/000296.png not found", "udiat-b", root, tmp_path)
    _edit_sheet(sheet, "Hoja1", lambda s: _set(s, 2, "Type", "Borderline"))
    _raises("row 2: column 'Type' has 'Borderline'", "udiat-b", root, tmp_path)
    _edit_sheet(sheet, "Hoja1", lambda s: setattr(s, "title", "Sheet1"))
    _raises("no sheet 'Hoja1'", "udiat-b", root, tmp_path)


# ----------------------------------------------------------------------------------------------------------
# BUS-UCLM


def test_bus_uclm_reads_the_bom_crlf_semicolon_table_and_groups_by_patient(tmp_path: Path) -> None:
    """Patient = first 4 letters; colour masks listed; normals dropped; the stray 'Y' read as yes; the authors' test patients."""
    root = replicas.write_bus_uclm(tmp_path, N)
    raw = (root / "BUS-UCLM Breast ultrasound lesion segmentation dataset/BUS-UCLM/INFO.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfImage;Resolution;Label;Doppler;Marks;Combined\r\n") and b";Y;" in raw
    data = _read("bus-uclm", root, tmp_path)
    cases = _cases(data)
    assert list(cases) == ["ALWI", "BEMA", "COPE", "DOLU", "ELCO", "WAQU"]
    assert {k: c.label for k, c in cases.items()} == {"ALWI": 0, "BEMA": 0, "COPE": 0, "DOLU": 1, "ELCO": 1, "WAQU": 1}
    assert [i.path.name for i in cases["ALWI"].images] == ["ALWI_000.png", "ALWI_001.png"]
    assert [i.masks[0].name for i in cases["ALWI"].images] == ["ALWI_000.png", "ALWI_001.png"]
    assert all(i.masks[0].parent.name == "masks" for c in data.cases for i in c.images)
    with Image.open(cases["DOLU"].images[0].masks[0]) as mask:
        assert mask.mode == "RGB" and (255, 0, 0) in {colour for _, colour in mask.getcolors()}
    assert cases["COPE"].columns["doppler"] == "yes" and cases["ALWI"].columns["doppler"] == "no&yes"
    assert cases["COPE"].columns["authors_split"] == "test" and cases["ALWI"].columns["authors_split"] == "train"
    assert data.notes == [f"{2 * N} normal images (no lesion) of INFO.csv left out"]
    assert data.scanner == "Siemens ACUSON S2000"


def test_bus_uclm_keeps_a_patient_with_both_labels_as_one_malignant_case(tmp_path: Path) -> None:
    """MIXD's benign image is left out (counted), its malignant one kept: one case, one label."""
    data = _read("bus-uclm", replicas.write_bus_uclm(tmp_path, N, mixed=True), tmp_path)
    mixed = _cases(data)["MIXD"]
    assert mixed.label == 1 and [i.path.name for i in mixed.images] == ["MIXD_001.png"]
    assert "1 benign images of patients who also have a malignant lesion left out" in data.notes


def test_bus_uclm_errors_name_the_table_the_label_and_the_mask(tmp_path: Path) -> None:
    """An unknown Label, a Doppler value that is neither yes nor no, a missing mask, a missing INFO.csv."""
    root = replicas.write_bus_uclm(tmp_path, N)
    base = root / "BUS-UCLM Breast ultrasound lesion segmentation dataset/BUS-UCLM"
    table = base / "INFO.csv"
    raw = table.read_bytes()
    table.write_bytes(raw.replace(b"BEMA_000.png;856x606;Benign", b"BEMA_000.png;856x606;Unclear"))
    _raises("row 8: column 'Label' has 'Unclear'", "bus-uclm", root, tmp_path)
    table.write_bytes(raw.replace(b"BEMA_000.png;856x606;Benign;No", b"BEMA_000.png;856x606;Benign;Maybe"))
    _raises("column 'Doppler' has 'Maybe'", "bus-uclm", root, tmp_path)
    table.write_bytes(raw)
    (base / "masks/DOLU_001.png").unlink()
    _raises("masks/DOLU_001.png not found", "bus-uclm", root, tmp_path)
    table.unlink()
    _raises("'INFO.csv'", "bus-uclm", root, tmp_path)


# ----------------------------------------------------------------------------------------------------------
# BUS_UC, QAMEBI


@pytest.mark.parametrize("depth", [2, 3])
def test_bus_uc_finds_the_nested_folders_and_keeps_ids_unique_per_class(depth: int, tmp_path: Path) -> None:
    """BUS_UC/BUS_UC/(BUS_UC/)?: class + number ids (numbers restart per class); All/ is not read twice."""
    root = replicas.write_bus_uc(tmp_path, N, depth=depth)
    data = _read("bus-uc", root, tmp_path)
    assert [c.case_id for c in data.cases] == ["benign-01", "benign-02", "benign-03", "malignant-01", "malignant-02", "malignant-03"]
    assert [c.label for c in data.cases] == [0, 0, 0, 1, 1, 1]
    case = _cases(data)["malignant-02"]
    assert case.images[0].path.parts[-3:] == ("Malignant", "images", "02.png")
    assert case.images[0].masks[0].parts[-3:] == ("Malignant", "masks", "02.png")
    assert _read("bus-uc", root / "BUS_UC", tmp_path).cases == data.cases


def test_bus_uc_errors_name_the_missing_mask(tmp_path: Path) -> None:
    """An image without its mask; a class folder without images."""
    root = replicas.write_bus_uc(tmp_path, N)
    base = root / "BUS_UC/BUS_UC/BUS_UC"
    (base / "Benign/masks/02.png").rename(base / "02.png")
    _raises("Benign/masks/02.png of image", "bus-uc", root, tmp_path)
    (base / "02.png").rename(base / "Benign/masks/02.png")
    for path in (base / "Malignant/images").iterdir():
        path.unlink()
    _raises("Malignant/images holds no images", "bus-uc", root, tmp_path)


def test_qamebi_reads_bmp_images_and_tif_masks(tmp_path: Path) -> None:
    """'N Class Image.bmp' with 'N Class Mask.tif'; other files ignored; ids class + N."""
    data = _read("qamebi", replicas.write_qamebi(tmp_path, N), tmp_path)
    cases = _cases(data)
    assert list(cases) == ["benign-1", "benign-2", "benign-3", "malignant-1", "malignant-2", "malignant-3"]
    assert cases["malignant-2"].images[0].path.name == "2 Malignant Image.bmp"
    assert [m.name for m in cases["malignant-2"].images[0].masks] == ["2 Malignant Mask.tif"]
    with Image.open(cases["benign-1"].images[0].path) as image, Image.open(cases["benign-1"].images[0].masks[0]) as mask:
        assert (image.format, mask.format) == ("BMP", "TIFF")


def test_qamebi_errors_name_the_missing_mask_and_class_folder(tmp_path: Path) -> None:
    """A missing .tif mask; no Malignant folder."""
    root = replicas.write_qamebi(tmp_path, N)
    (root / "Benign/3 Benign Mask.tif").rename(root / "mask.tif")
    _raises("3 Benign Mask.tif not found", "qamebi", root, tmp_path)
    (root / "mask.tif").rename(root / "Benign/3 Benign Mask.tif")
    for path in (root / "Malignant").iterdir():
        path.unlink()
    _raises("'* Malignant Image.bmp'", "qamebi", root, tmp_path)


# ----------------------------------------------------------------------------------------------------------
# BreastMNIST


def test_breastmnist_inverts_labels_keeps_splits_and_writes_each_png_once(tmp_path: Path) -> None:
    """MedMNIST 0 (malignant) -> 1; the npz keys as splits; PNGs hold the arrays and are not rewritten when already there."""
    root = replicas.write_breastmnist(tmp_path, N)
    arrays = np.load(root / "breastmnist.npz")
    data = _read("breastmnist", root, tmp_path)
    cases = _cases(data)
    assert [sum(c.split == s for c in data.cases) for s in ("train", "val", "test")] == [6, 2, 2]
    for split in ("train", "val", "test"):
        for index, raw in enumerate(arrays[f"{split}_labels"][:, 0]):
            case = cases[f"{split}-{index:04d}"]
            assert case.label == 1 - int(raw) and case.split == split and case.images[0].masks == ()
            assert np.array_equal(np.asarray(Image.open(case.images[0].path)), arrays[f"{split}_images"][index])
    derived = tmp_path / "_derived/breastmnist"
    assert cases["train-0000"].images[0].path == (derived / "train_0000.png").resolve()
    assert data.crop == "none" and "(10 new)" in data.notes[0]
    stamps = {p.name: p.stat().st_mtime_ns for p in derived.iterdir()}
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(derived / "val_0001.png")
    again = _read("breastmnist", root, tmp_path)
    assert "(1 new)" in again.notes[0]
    assert {p.name: p.stat().st_mtime_ns for p in derived.iterdir() if p.name != "val_0001.png"} == {k: v for k, v in stamps.items() if k != "val_0001.png"}
    assert np.array_equal(np.asarray(Image.open(derived / "val_0001.png")), arrays["val_images"][1])


def test_breastmnist_errors_name_the_missing_array_and_the_label(tmp_path: Path) -> None:
    """An npz without val_labels; a label that is neither 0 nor 1."""
    root = replicas.write_breastmnist(tmp_path, N)
    arrays = dict(np.load(root / "breastmnist.npz"))
    np.savez(root / "breastmnist.npz", **{k: v for k, v in arrays.items() if k != "val_labels"})
    _raises("missing array(s) val_labels", "breastmnist", root, tmp_path)
    arrays["test_labels"][1, 0] = 2
    np.savez(root / "breastmnist.npz", **arrays)
    _raises("test_labels[1] is 2", "breastmnist", root, tmp_path)


# ----------------------------------------------------------------------------------------------------------
# BCNB


@pytest.mark.parametrize("layout", ["paper_patches", "patches"])
def test_bcnb_reads_both_patch_layouts_the_crlf_splits_and_the_clinical_columns(layout: str, tmp_path: Path) -> None:
    """All patches of a patient in one case; N0 -> 0, N+ -> 1 with the 3-class status kept; official splits; blank grade empty."""
    root = replicas.write_bcnb(tmp_path, N, layout=layout)
    raw = (root / "BCNB Dataset/dataset-splitting/train_id.txt").read_bytes()
    assert raw == b"1\r\n4"
    data = _read("bcnb", root, tmp_path)
    cases = _cases(data)
    assert list(cases) == ["1", "2", "3", "4", "5", "6"]
    assert [c.label for c in data.cases] == [0, 0, 0, 1, 1, 1]
    assert [c.columns["aln_status"] for c in data.cases] == ["N0", "N0", "N0", "N+(>2)", "N+(1-2)", "N+(>2)"]
    assert [c.columns["n_metastases"] for c in data.cases] == ["0", "0", "0", "4", "1", "4"]
    assert [c.split for c in data.cases] == ["train", "val", "test", "train", "val", "test"]
    assert [i.path.name for i in cases["1"].images] == ["1_0_0_0.jpg", "1_0_256_0.jpg", "1_0_512_0.jpg"]
    assert all(i.path.parent.name == c.case_id and i.masks == () for c in data.cases for i in c.images)
    assert cases["1"].columns == {
        "age": "45", "tumor_size_mm": "23", "er": "1", "pr": "1", "her2": "0", "ki67": "40", "histologic_type": "IDC",
        "histologic_grade": "2", "her2_expression": "0", "molecular_subtype": "Luminal A", "aln_status": "N0", "n_metastases": "0",
    }  # fmt: skip
    assert cases["2"].columns["histologic_grade"] == "" and cases["2"].columns["ki67"] == "1"
    assert cases["3"].columns["histologic_type"] == "other" and cases["2"].columns["histologic_type"] == "ILC"
    assert data.endpoint == LYMPH_NODE_STATUS and (data.modality, data.crop) == ("pathology", "none")


def test_bcnb_errors_name_the_column_the_split_files_and_the_patches(tmp_path: Path) -> None:
    """An unknown ALN status, a patient in no split file, a patient without patches, a missing column, no patch folder."""
    root = replicas.write_bcnb(tmp_path, N)
    base = root / "BCNB Dataset"
    sheet = base / "patient-clinical-data.xlsx"
    _edit_sheet(sheet, "Sheet1", lambda s: _set(s, 3, "ALN status", "N1"))
    _raises("row 3: column 'ALN status' has 'N1'", "bcnb", root, tmp_path)
    _edit_sheet(sheet, "Sheet1", lambda s: _set(s, 3, "ALN status", "N+(＞2)"))
    assert _cases(_read("bcnb", root, tmp_path))["2"].columns["aln_status"] == "N+(>2)"
    (base / "dataset-splitting/val_id.txt").write_bytes(b"5")
    _raises("(Patient ID 2): in none of the split files", "bcnb", root, tmp_path)
    (base / "dataset-splitting/val_id.txt").write_bytes(b"2\r\n5")
    for path in (base / "paper_patches/patches/3").iterdir():
        path.unlink()
    _raises("paper_patches/patches/3 holds no patches", "bcnb", root, tmp_path)
    _edit_sheet(sheet, "Sheet1", lambda s: _set(s, 1, "ALN status", "ALN"))
    _raises("missing column(s) 'ALN status'", "bcnb", root, tmp_path)
    (base / "paper_patches").rename(base / "other")
    _raises("no patch folder", "bcnb", root, tmp_path)
