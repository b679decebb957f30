"""Write rendered images as DICOM ultrasound objects (stills here; cine loops in ``cine_dicom.py``) with deterministic UIDs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, UltrasoundImageStorage, generate_uid

from simulation.phantom.presets import Scanner

STUDY_DATE = "20240115"
STUDY_TIME = "093000"


def phantom_uid(*parts: object) -> str:
    """Return a UID derived only from ``parts`` (the same inputs give the same UID)."""
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def pseudonym(seed: int, site: str, case_id: str) -> str:
    """Return a pseudonymous patient id that does not reveal the case id."""
    digest = hashlib.sha256(f"axilla-phantom|{seed}|{site}|{case_id}".encode()).hexdigest()
    return f"PX{digest[:10].upper()}"


def us_region(pixel_mm: float, fov_box: tuple[int, int, int, int]) -> Dataset:
    """Return the SequenceOfUltrasoundRegions item calibrating the field of view (cm per pixel)."""
    x0, y0, x1, y1 = fov_box
    region = Dataset()
    region.RegionSpatialFormat = 1
    region.RegionDataType = 1
    region.RegionFlags = 0
    region.RegionLocationMinX0 = x0
    region.RegionLocationMinY0 = y0
    region.RegionLocationMaxX1 = x1 - 1
    region.RegionLocationMaxY1 = y1 - 1
    region.ReferencePixelX0 = (x0 + x1) // 2
    region.ReferencePixelY0 = y0
    region.PhysicalUnitsXDirection = 3
    region.PhysicalUnitsYDirection = 3
    region.ReferencePixelPhysicalValueX = 0.0
    region.ReferencePixelPhysicalValueY = 0.0
    region.PhysicalDeltaX = round(pixel_mm / 10.0, 8)
    region.PhysicalDeltaY = round(pixel_mm / 10.0, 8)
    return region


def write_dicom(image: np.ndarray, path: Path, *, scanner: Scanner, site: str, seed: int, case_id: str,
                age: int, pixel_mm: float, fov_box: tuple[int, int, int, int]) -> None:
    """Write an 8-bit grayscale image as a single-frame US Image Storage DICOM file.

    Args:
        image: (rows, columns) uint8 pixels.
        path: the file to write.
        scanner: the site's scanner (manufacturer, model, probe).
        site: the site's name (institution and UID entropy).
        seed: the cohort seed (UID entropy).
        case_id: the case (UID entropy; not stored in clear).
        age: the patient's age in years.
        pixel_mm: millimetres per pixel (for the ultrasound region calibration).
        fov_box: the field of view's bounding box (x0, y0, x1, y1).
    """
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"expected a 2-D uint8 image, got {image.dtype} {image.shape}")
    ds = us_dataset(UltrasoundImageStorage, scanner=scanner, site=site, seed=seed, case_id=case_id, age=age)
    set_pixels(ds, image[None], pixel_mm, fov_box)
    ds.save_as(path, enforce_file_format=True)


def phantom_dataset(sop_class: str, uid_tag: str, *, modality: str, manufacturer: str, site: str, seed: int, case_id: str, age: int) -> Dataset:
    """The file meta, patient, study, equipment and instance attributes every phantom DICOM object shares (UIDs from ``uid_tag``)."""
    sop_uid = phantom_uid("axilla-phantom", seed, site, case_id, uid_tag)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "AXILLA_PHANTOM"
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = STUDY_DATE
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = STUDY_TIME
    ds.AccessionNumber = pseudonym(seed, site, case_id)[2:10]
    ds.Modality = modality
    ds.Manufacturer = manufacturer
    ds.InstitutionName = site.replace("_", " ").title() + " (phantom)"
    ds.ReferringPhysicianName = ""
    ds.PatientName = "PHANTOM^" + pseudonym(seed, site, case_id)
    ds.PatientID = pseudonym(seed, site, case_id)
    ds.PatientBirthDate = ""
    ds.PatientSex = "F"
    ds.PatientAge = f"{int(age):03d}Y"
    ds.BodyPartExamined = "BREAST"
    return ds


def us_dataset(sop_class: str, *, scanner: Scanner, site: str, seed: int, case_id: str, age: int,
               series: str = "Breast lesion B-mode") -> Dataset:
    """Return the patient, study, series, equipment and instance attributes of one phantom ultrasound object.

    Args:
        sop_class: the SOP class UID (still or multi-frame ultrasound image storage).
        scanner: the site's scanner (manufacturer, model, probe).
        site: the site's name (institution and UID entropy).
        seed: the cohort seed (UID entropy).
        case_id: the case (UID entropy; not stored in clear).
        age: the patient's age in years.
        series: the series description.

    Returns:
        The dataset with its file meta, without any image attribute.
    """
    tag = "sop" if sop_class == UltrasoundImageStorage else f"sop|{sop_class}"
    ds = phantom_dataset(sop_class, tag, modality="US", manufacturer=scanner.manufacturer, site=site, seed=seed, case_id=case_id, age=age)
    ds.StationName = scanner.model.replace(" ", "")[:16]
    ds.StudyDescription = "US BREAST"
    ds.SeriesDescription = series
    ds.ManufacturerModelName = scanner.model
    ds.TransducerData = [scanner.probe]
    ds.StudyInstanceUID = phantom_uid("axilla-phantom", seed, site, case_id, "study")
    ds.SeriesInstanceUID = phantom_uid("axilla-phantom", seed, site, case_id, "series")
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    return ds


def set_pixels(ds: Dataset, frames: np.ndarray, pixel_mm: float, fov_box: tuple[int, int, int, int]) -> None:
    """Set the image attributes, the ultrasound region and the native pixel data of (frames, rows, columns) uint8 pixels.

    A single frame is written without NumberOfFrames (a still), several with it (a multi-frame object).
    """
    if frames.dtype != np.uint8 or frames.ndim != 3:
        raise ValueError(f"expected (frames, rows, columns) uint8 pixels, got {frames.dtype} {frames.shape}")
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    if frames.shape[0] > 1:
        ds.NumberOfFrames = int(frames.shape[0])
    ds.Rows, ds.Columns = int(frames.shape[1]), int(frames.shape[2])
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "00"
    ds.SequenceOfUltrasoundRegions = Sequence([us_region(pixel_mm, fov_box)])
    pixels = np.ascontiguousarray(frames).tobytes()
    ds.PixelData = pixels + b"\x00" * (len(pixels) % 2)
