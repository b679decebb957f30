"""Store a rendered mammographic view as its site does: 8- or 16-bit PNG, or DICOM MONOCHROME1/2 (Digital Mammography For Presentation)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset

from simulation.phantom.dicom import phantom_dataset, phantom_uid

MammoStorage = Literal["png8", "png16", "dicom_mono1", "dicom_mono2"]
MAMMO_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray Image Storage - For Presentation
BITS_STORED: dict[str, int] = {"png8": 8, "png16": 16, "dicom_mono1": 12, "dicom_mono2": 14}
_ORIENTATION = {("L", "CC"): ["A", "R"], ("R", "CC"): ["P", "L"], ("L", "MLO"): ["A", "F"], ("R", "MLO"): ["P", "F"]}


def stored_values(image: np.ndarray, storage: MammoStorage) -> np.ndarray:
    """Quantise a [0, 1] attenuation image to the storage's bit depth (MONOCHROME1: high stored value = dark)."""
    top = 2 ** BITS_STORED[storage] - 1
    values = np.rint(np.clip(image, 0.0, 1.0) * top)
    if storage == "dicom_mono1":
        values = top - values
    return values.astype(np.uint8 if storage == "png8" else np.uint16)


def write_view(image: np.ndarray, stem: Path, storage: MammoStorage, *, view: str, laterality: str, site: str,
               seed: int, case_id: str, age: int, pixel_mm: float) -> Path:
    """Write one view as ``stem`` + ``.png`` or ``.dcm``; return the file written."""
    values = stored_values(image, storage)
    if storage.startswith("png"):
        path = stem.with_suffix(".png")
        Image.fromarray(values).save(path, format="PNG", compress_level=3)
        return path
    path = stem.with_suffix(".dcm")
    ds = mammo_dataset(view=view, laterality=laterality, site=site, seed=seed, case_id=case_id, age=age)
    _set_pixels(ds, values, storage, pixel_mm)
    ds.save_as(path, enforce_file_format=True)
    return path


def mammo_dataset(*, view: str, laterality: str, site: str, seed: int, case_id: str, age: int) -> Dataset:
    """Return the patient, study, series, equipment and instance attributes of one phantom mammographic view."""
    ds = phantom_dataset(MAMMO_SOP_CLASS, f"mammo|{view}", modality="MG", manufacturer="Phantom Mammography", site=site, seed=seed, case_id=case_id, age=age)
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.StudyDescription = "MG BREAST 2 VIEWS"
    ds.SeriesDescription = f"{laterality}{view}"
    ds.ImageLaterality = laterality
    ds.Laterality = laterality
    ds.ViewPosition = view
    ds.PatientOrientation = _ORIENTATION[(laterality, view)]
    ds.StudyInstanceUID = phantom_uid("axilla-phantom", seed, site, case_id, "mammo-study")
    ds.SeriesInstanceUID = phantom_uid("axilla-phantom", seed, site, case_id, "mammo-series", view)
    ds.StudyID = "1"
    ds.SeriesNumber = 1 if view == "CC" else 2
    ds.InstanceNumber = 1
    return ds


def _set_pixels(ds: Dataset, values: np.ndarray, storage: MammoStorage, pixel_mm: float) -> None:
    """Set the grayscale image attributes, a full-range window and the native 16-bit pixel data."""
    bits = BITS_STORED[storage]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if storage == "dicom_mono1" else "MONOCHROME2"
    ds.Rows, ds.Columns = int(values.shape[0]), int(values.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelSpacing = ds.ImagerPixelSpacing = [round(pixel_mm, 6), round(pixel_mm, 6)]
    ds.WindowCenter = 2 ** (bits - 1)
    ds.WindowWidth = 2**bits
    ds.VOILUTFunction = "LINEAR"
    ds.LossyImageCompression = "00"
    ds.PixelData = np.ascontiguousarray(values.astype("<u2")).tobytes()
