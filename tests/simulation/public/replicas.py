"""Tiny replicas of the public breast datasets in their published layouts, with generated pixels.

Each ``write_<module>(parent, n)`` writes about ``n`` benign (N0) and ``n`` malignant (N+) cases,
plus the quirky extras of the reference's replica recipes, under ``parent/<cli name>/`` and returns
that folder: the one a user would pass (it holds the dataset's own root folder as unzipped).
Images are 48x40 speckle with a lesion: benign lesions are bright, smooth and oval; malignant ones
dark and irregular (spiculated), so a small model can tell them apart. Masks are the filled lesion
(0/255); normal images have none and black masks. Every file is a function of its name (seeded),
so a replica is the same on every run.
"""

from __future__ import annotations

import csv
import io
import json
import zlib
from pathlib import Path

import numpy as np
import openpyxl
from PIL import Image

SIZE = (48, 40)  # width, height
BENIGN, MALIGNANT, NORMAL = "benign", "malignant", "normal"
BUS_BRA_DEVICES = ("GE Logiq 7 @10-14MHz", "GE Logiq 5 @10-12MHz", "Toshiba Aplio 300 @12-14 MHz", "U-Systems @10-14MHz")
BUS_UCLM_PATIENTS = (
    "ALWI", "COPE", "BEMA", "DOLU", "ELCO", "WAQU", "ANFO", "GIRA", "HUSO", "CRCI", "JOPE", "FLKA",
    "KIRO", "LUNA", "MARE", "NOLI", "OSPA", "PERU", "QUIN", "RASO", "SEVI", "TOMA", "URBE", "VALE",
)  # fmt: skip  (COPE, ANFO, ELCO, CRCI, FLKA: the authors' test patients)
BUSI_EXTRA_MASKS = {"benign (4)": 1, "benign (195)": 2, "malignant (53)": 1}  # stem -> number of _mask_k files beyond _mask
BREAST_OTHER = {22: ("case022_other1.png", "case022_other2.png")}
BREAST_NORMAL = 45


# ----------------------------------------------------------------------------------------------------------
# pixels


def _rng(name: str) -> np.random.Generator:
    """A generator seeded by a file's name."""
    return np.random.default_rng(zlib.crc32(name.encode("utf-8")))


def lesion(name: str, kind: str, size: tuple[int, int] = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """A grayscale image (H, W) uint8 and its lesion mask (bool) of a benign, malignant or normal case."""
    rng = _rng(name)
    width, height = size
    image = rng.normal(115, 22, (height, width))
    yy, xx = np.mgrid[0:height, 0:width]
    cx, cy = width / 2 + rng.uniform(-3, 3), height / 2 + rng.uniform(-2, 2)
    rx, ry = width * rng.uniform(0.18, 0.24), height * rng.uniform(0.18, 0.24)
    radius = np.hypot((xx - cx) / rx, (yy - cy) / ry)
    if kind == NORMAL:
        return _uint8(image), np.zeros((height, width), dtype=bool)
    if kind == BENIGN:
        mask = radius <= 1.0
        image[mask] = rng.normal(205, 8, int(mask.sum()))
    else:
        angle = np.arctan2(yy - cy, xx - cx)
        spikes = 1.0 + 0.35 * np.sin(rng.integers(5, 8) * angle + rng.uniform(0, 2 * np.pi)) + 0.15 * np.sin(3 * angle)
        mask = radius <= spikes
        image[mask] = rng.normal(35, 10, int(mask.sum()))
        shadow = (np.abs(xx - cx) < rx * 0.8) & (yy > cy + ry)  # posterior acoustic shadowing
        image[shadow] *= 0.55
    return _uint8(image), mask


def _uint8(array: np.ndarray) -> np.ndarray:
    """Clip and cast to uint8."""
    return np.clip(array, 0, 255).astype(np.uint8)


def _save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    """Save an array as an image (the format from the suffix), converted to ``mode`` if given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    (image.convert(mode) if mode else image).save(path)
    return path


def _pair(image_path: Path, mask_path: Path | None, kind: str, image_mode: str | None = None, mask_mode: str | None = None) -> np.ndarray:
    """Write one image and (when a path is given) its mask as 0/255; return the mask."""
    pixels, mask = lesion(image_path.name, kind)
    _save(image_path, pixels, image_mode)
    if mask_path is not None:
        _save(mask_path, (mask * 255).astype(np.uint8), mask_mode)
    return mask


def _extra_mask(path: Path, name: str) -> None:
    """A second lesion's mask (a small disc) for the multi-mask quirks."""
    width, height = SIZE
    rng = _rng(name)
    yy, xx = np.mgrid[0:height, 0:width]
    disc = np.hypot(xx - rng.uniform(6, 12), yy - rng.uniform(6, 12)) <= 4
    _save(path, (disc * 255).astype(np.uint8))


def _xlsx(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    """Write a workbook with these sheets (rows of cells; ``None`` is an empty cell)."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)
    return path


def _kinds(n: int) -> list[str]:
    """``n`` benign then ``n`` malignant."""
    return [BENIGN] * n + [MALIGNANT] * n


# ----------------------------------------------------------------------------------------------------------
# the datasets


def write_busi(parent: Path, n: int = 3) -> Path:
    """``busi/Dataset_BUSI_with_GT/{benign,malignant,normal}/``: RGB images, ``_mask`` (+ ``_mask_1``/``_mask_2``) masks, 2 normals."""
    out = Path(parent) / "busi"
    base = out / "Dataset_BUSI_with_GT"
    numbers = {BENIGN: sorted(set(range(1, n + 1)) | {4, 195}), MALIGNANT: sorted(set(range(1, n + 1)) | {53}), NORMAL: [1, 2]}
    for kind, ids in numbers.items():
        for number in ids:
            stem = f"{kind} ({number})"
            _pair(base / kind / f"{stem}.png", base / kind / f"{stem}_mask.png", kind, image_mode="RGB")
            for extra in range(1, BUSI_EXTRA_MASKS.get(stem, 0) + 1):
                _extra_mask(base / kind / f"{stem}_mask_{extra}.png", f"{stem}_{extra}")
    return out


def write_bus_bra(parent: Path, n: int = 3) -> Path:
    """``bus-bra/BUSBRA/``: Images/, Masks/ (1-bit), bus_data.csv and the fold files; dual-view cases have -l and -r images.

    The k-th benign and the k-th malignant case share device ``k % 4``, so with ``n >= 4`` all 4 devices hold both labels.
    """
    out = Path(parent) / "bus-bra"
    base = out / "BUSBRA"
    rows, folds = [], []
    for index, kind in enumerate(_kinds(n)):
        case = 1 + 5 * index
        device = BUS_BRA_DEVICES[index % n % len(BUS_BRA_DEVICES)]  # each device sees both labels
        histology = ("fibroadenoma", "cyst")[index % 2] if kind == BENIGN else ("invasive ductal carcinoma", "invasive lobular carcinoma")[index % 2]
        birads = (2, 3)[index % 2] if kind == BENIGN else (4, 5)[index % 2]
        for suffix in ("l", "r") if index % 2 == 0 else ("s",):
            image_id = f"bus_{case:04d}-{suffix}"
            mask = _pair(base / "Images" / f"{image_id}.png", base / "Masks" / f"mask_{case:04d}-{suffix}.png", kind, mask_mode="1")
            ys, xs = np.nonzero(mask)
            bbox = f"[{xs.min() + 1},{ys.min() + 1},{xs.max() - xs.min() + 1},{ys.max() - ys.min() + 1}]"
            side = {"l": "left", "r": "right", "s": "single"}[suffix]
            rows.append([image_id, case, histology, kind, birads, device, SIZE[0], SIZE[1], side, bbox])
            folds.append((image_id, kind, index))
    _csv(base / "bus_data.csv", ["ID", "Case", "Histology", "Pathology", "BIRADS", "Device", "Width", "Height", "Side", "BBOX"], rows)
    for k in (5, 10):
        header = ["ID", "Pathology", "kFold", *(f"valid_{i}" for i in range(1, k + 1))]
        body = [[image_id, kind, index % k + 1, *("NaN" if i == index % k + 1 else int(i != (index + 1) % k + 1) for i in range(1, k + 1))]
                for image_id, kind, index in folds]  # fmt: skip
        _csv(base / f"{k}-fold-cv.csv", header, body)
    (base / "LICENSE.txt").write_text("Dataset licence (replica)\n", encoding="utf-8")
    return out


def _csv(path: Path, header: list[str], rows: list[list[object]], delimiter: str = ",", bom: bool = False, crlf: bool = False) -> None:
    """Write a CSV with the given separator, BOM and line ending (``\\n`` unless ``crlf``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n" if crlf else "\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\ufeff" if bom else "").encode("utf-8") + buffer.getvalue().encode("utf-8"))


BREAST_COLUMNS = (
    "CaseID", "Image_filename", "Mask_tumor_filename", "Mask_other_filename", "Pixel_size", "Age", "Tissue_composition",
    "Signs", "Symptoms", "Shape", "Margin", "Echogenicity", "Posterior_features", "Halo", "Calcifications",
    "Skin_thickening", "Interpretation", "BIRADS", "Verification", "Diagnosis", "Classification",
)  # fmt: skip


def write_breast_lesions_usg(parent: Path, n: int = 3) -> Path:
    """``breast-lesions-usg/``: the flat images-and-masks folder and the clinical xlsx beside it (mixed BIRADS and Age, '&' masks, a normal)."""
    out = Path(parent) / "breast-lesions-usg"
    folder = out / "BrEaST-Lesions_USG-images_and_masks"
    numbers = [1, 22] + [k for k in range(2, 4 * n + 3) if k not in (22, BREAST_NORMAL)]
    rows: list[list[object]] = [list(BREAST_COLUMNS)]
    for index, number in enumerate(numbers[: 2 * n]):
        kind = (BENIGN, MALIGNANT)[index % 2]
        rows.append(_breast_row(folder, number, kind, index))
    rows.append(_breast_row(folder, BREAST_NORMAL, NORMAL, 0))
    dictionary = [["Column", "Description"], ["Case_ID", "case number"], ["Classification", "benign, malignant or normal"]]
    _xlsx(out / "BrEaST-Lesions-USG-clinical-data-Dec-15-2023.xlsx", {"BrEaST-Lesions-USG clinical dat": rows, "Data Dictionary": dictionary})
    return out


def _breast_row(folder: Path, number: int, kind: str, index: int) -> list[object]:
    """One case's image, masks and spreadsheet row."""
    name = f"case{number:03d}"
    tumour = None if kind == NORMAL else f"{name}_tumor.png"
    _pair(folder / f"{name}.png", folder / tumour if tumour else None, kind)
    others = BREAST_OTHER.get(number, ())
    for other in others:
        _extra_mask(folder / other, other)
    birads: object = {NORMAL: 1, BENIGN: (2, 3)[index // 2 % 2]}.get(kind, ("4a", 5, "4c")[index % 3])
    age: object = "not available" if index == 2 else 40 + 3 * index
    shape, margin = ("oval", "circumscribed") if kind == BENIGN else ("irregular", "not circumscribed - spiculated&not circumscribed - angular")
    if kind == NORMAL:
        shape = margin = "not applicable"
    diagnosis = {BENIGN: "fibroadenoma", MALIGNANT: "invasive ductal carcinoma", NORMAL: "not applicable"}[kind]
    verification = "not applicable" if kind == NORMAL else "confirmed by biopsy"
    return [
        number, f"{name}.png", tumour, "&".join(others) or None, (7.8125e-3, 1.078e-2, 6.944444e-3)[index % 3], age,
        "heterogeneous: predominantly fat", "no", "no", shape, margin, "hypoechoic", "no", "no", "no", "no",
        "replica", birads, verification, diagnosis, kind,
    ]  # fmt: skip


def write_udiat_b(parent: Path, n: int = 3) -> Path:
    """``udiat-b/BUS/``: original/ and GT/ with non-contiguous ids, DatasetB.xlsx (sheet Hoja1, Image as text, legend columns)."""
    out = Path(parent) / "udiat-b"
    base = out / "BUS"
    ids = [*range(1, n + 1), *range(295, 295 + n)]
    legend = [("FA", "Fibroadenoma"), ("IDC", ""), ("DCIS", ""), ("PAP", "Papiloma"), ("UNK", "Unknown"), ("LN", "Lymph Node"), ("LP", "Lymphoma")]
    rows: list[list[object]] = [["Image", "Type", "Diagnosis", None, None, "Llegend", None]]
    for index, number in enumerate(ids):
        kind = (BENIGN, MALIGNANT)[index % 2]
        name = f"{number:06d}"
        _pair(base / "original" / f"{name}.png", base / "GT" / f"{name}.png", kind)
        diagnosis = ("CYST", "FA")[index // 2 % 2] if kind == BENIGN else ("IDC", "ILC", "DCIS")[index // 2 % 3]
        rows.append([name, kind.capitalize(), diagnosis, None, None])
    for index, (code, meaning) in enumerate(legend):
        if index + 1 >= len(rows):
            rows.append([None, None, None, None, None])
        rows[index + 1][5:7] = [code, meaning or None]
    _xlsx(base / "DatasetB.xlsx", {"Hoja1": rows})
    return out


def write_bus_uclm(parent: Path, n: int = 3, mixed: bool = False) -> Path:
    """``bus-uclm/BUS-UCLM Breast ultrasound lesion segmentation dataset/BUS-UCLM/``: 2 lesion + 1 normal image per patient, RGB masks, INFO.csv (';', BOM, CRLF, a stray 'Y').

    With ``mixed`` one more patient, ``MIXD``, has a benign and a malignant image.
    """
    out = Path(parent) / "bus-uclm"
    base = out / "BUS-UCLM Breast ultrasound lesion segmentation dataset" / "BUS-UCLM"
    patients = [*zip(_uclm_codes(2 * n), _kinds(n))] + ([("MIXD", BENIGN), ("MIXD", MALIGNANT)] if mixed else [])
    rows, counter = [], {}
    for index, (patient, kind) in enumerate(patients):
        for image_kind in (kind, kind, NORMAL) if patient != "MIXD" else (kind,):
            number = counter[patient] = counter.get(patient, -1) + 1
            name = f"{patient}_{number:03d}.png"
            mask = _pair(base / "images" / name, None, image_kind)
            colour = np.zeros((*mask.shape, 3), dtype=np.uint8)
            colour[mask] = (0, 255, 0) if image_kind == BENIGN else (255, 0, 0)
            _save(base / "masks" / name, colour)
            doppler = "Y" if (index, number) == (1, 0) else ("No", "Yes")[number % 2]
            rows.append([name, "856x606", image_kind.capitalize(), doppler, ("No", "Yes")[index % 2], "No"])
    _csv(base / "INFO.csv", ["Image", "Resolution", "Label", "Doppler", "Marks", "Combined"], rows, delimiter=";", bom=True, crlf=True)
    return out


def _uclm_codes(count: int) -> list[str]:
    """``count`` 4-letter patient codes: the listed ones, then ZAAA, ZAAB, ..."""
    extra = (f"Z{chr(65 + i // 676 % 26)}{chr(65 + i // 26 % 26)}{chr(65 + i % 26)}" for i in range(max(0, count - len(BUS_UCLM_PATIENTS))))
    return [*BUS_UCLM_PATIENTS[:count], *extra]


def write_bus_uc(parent: Path, n: int = 3, depth: int = 3) -> Path:
    """``bus-uc/BUS_UC/.../BUS_UC/`` (``depth`` nested folders): Benign/ and Malignant/ with images/ and masks/ numbered from 01, and All/."""
    out = Path(parent) / "bus-uc"
    base = out.joinpath(*["BUS_UC"] * depth)
    for cls, kind in (("Benign", BENIGN), ("Malignant", MALIGNANT)):
        for number in range(1, n + 1):
            name = f"{number:02d}.png"
            _pair(base / cls / "images" / name, base / cls / "masks" / name, kind)
            all_name = f"{number + (n if kind == MALIGNANT else 0):02d}.png"
            _pair(base / "All" / "images" / all_name, base / "All" / "masks" / all_name, kind)
    return out


def write_qamebi(parent: Path, n: int = 3) -> Path:
    """``qamebi/{Benign,Malignant}/``: ``N Class Image.bmp`` and ``N Class Mask.tif`` (plus a stray ``Thumbs.db``)."""
    out = Path(parent) / "qamebi"
    for cls, kind in (("Benign", BENIGN), ("Malignant", MALIGNANT)):
        for number in range(1, n + 1):
            _pair(out / cls / f"{number} {cls} Image.bmp", out / cls / f"{number} {cls} Mask.tif", kind)
        (out / cls / "Thumbs.db").write_bytes(b"\0")
    return out


BREASTMNIST_SPLITS = {"train": 1.0, "val": 1 / 3, "test": 1 / 3}  # share of n per class and split


def write_breastmnist(parent: Path, n: int = 3) -> Path:
    """``breastmnist/breastmnist.npz``: 28x28 uint8 images, labels (N, 1) with MedMNIST's 0 = malignant, 1 = normal/benign."""
    out = Path(parent) / "breastmnist"
    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for split, share in BREASTMNIST_SPLITS.items():
        count = max(1, round(n * share))
        kinds = [MALIGNANT, BENIGN] * count
        arrays[f"{split}_images"] = np.stack([lesion(f"{split}_{i}", kind, (28, 28))[0] for i, kind in enumerate(kinds)])
        arrays[f"{split}_labels"] = np.array([[0 if kind == MALIGNANT else 1] for kind in kinds], dtype=np.uint8)
    np.savez(out / "breastmnist.npz", **arrays)
    return out


BCNB_HEADER = (
    "Patient ID", "Age(years)", "Tumour Size(cm)", "Tumour Type", "ER", "PR", "HER2", "HER2 Expression", "Histological grading",
    "Surgical", "Ki67", "Molecular subtype", "Number of lymph node metastases", "ALN status",
)  # fmt: skip
BCNB_SPLITS = ("train", "val", "test")


def write_bcnb(parent: Path, n: int = 3, layout: str = "paper_patches") -> Path:
    """``bcnb/BCNB Dataset/``: WSIs/, ``paper_patches/patches/<pid>/`` (or ``patches/<pid>/`` with ``layout='patches'``), the xlsx and CRLF split files.

    Patients 1..n are N0, n+1..2n N+ (alternately N+(1-2) and N+(>2)); every third patient's grade is blank.
    """
    out = Path(parent) / "bcnb"
    base = out / "BCNB Dataset"
    patches = base / ("paper_patches/patches" if layout == "paper_patches" else "patches")
    rows: list[list[object]] = [list(BCNB_HEADER)]
    splits: dict[str, list[int]] = {s: [] for s in BCNB_SPLITS}
    for index in range(2 * n):
        pid, positive = index + 1, index >= n
        metastases = 0 if not positive else (1, 4)[index % 2]
        status = "N0" if not positive else ("N+(1-2)", "N+(>2)")[index % 2]
        splits[BCNB_SPLITS[index % n % 3]].append(pid)
        for x in (0, 256) if index % 2 else (0, 256, 512):
            _save(patches / str(pid) / f"{pid}_0_{x}_0.jpg", _patch(f"{pid}_{x}", positive))
        _save(base / "WSIs" / f"{pid}.jpg", _patch(f"wsi{pid}", positive, 64))
        (base / "WSIs" / f"{pid}.json").write_text(json.dumps({"positive": [{"vertices": [[10, 10], [60, 10], [60, 60], [10, 60]]}]}), encoding="utf-8")
        rows.append([
            pid, 45 + index, (2.2999999999999998, 1.5, 3.1)[index % 3],
            ("Invasive ductal carcinoma", "Invasive lobular carcinoma", "Other type")[index % 3],
            ("Positive", "Negative")[index % 2], "Positive", ("Negative", "Positive")[index % 2], ("0", "1+", "2+", "3+")[index % 4],
            None if index % 3 == 1 else (2, 3, 1)[index % 3], "Axillary lymph node dissection", ("0.4", "0.01", "0.15")[index % 3],
            ("Luminal A", "Luminal B", "HER2(+)", "Triple negative")[index % 4], metastases, status,
        ])  # fmt: skip
    _xlsx(base / "patient-clinical-data.xlsx", {"Sheet1": rows})
    for split, ids in splits.items():
        path = base / "dataset-splitting" / f"{split}_id.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes("\r\n".join(str(i) for i in ids).encode("ascii"))
    (base / "README.txt").write_text("BCNB replica\n", encoding="utf-8")
    return out


def _patch(name: str, positive: bool, size: int = 256) -> np.ndarray:
    """An H&E-like RGB patch: pink stroma with purple nuclei, more and larger in N+ patients."""
    rng = _rng(name)
    patch = np.empty((size, size, 3))
    patch[...] = (235, 190, 215)
    patch += rng.normal(0, 8, patch.shape)
    scale = size / 256
    for _ in range(size // (4 if positive else 16)):
        cx, cy = rng.uniform(0, size), rng.uniform(0, size)
        r = (rng.uniform(4, 9) if positive else rng.uniform(2, 4)) * scale
        x0, x1, y0, y1 = (max(0, int(v)) for v in (cx - r, cx + r + 2, cy - r, cy + r + 2))
        yy, xx = np.mgrid[y0:min(y1, size), x0:min(x1, size)]
        patch[y0:y1, x0:x1][np.hypot(xx - cx, yy - cy) <= r] = (90, 40, 130)
    return _uint8(patch)
