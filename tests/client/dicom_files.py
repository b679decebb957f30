"""DICOM files as scanners write them, made on the fly for the tests: any photometric, bit depth, frames and transfer syntax."""

from __future__ import annotations

import io
from pathlib import Path

import imagecodecs
import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

US_IMAGE = UID("1.2.840.10008.5.1.4.1.1.6.1")
US_MULTI_FRAME = UID("1.2.840.10008.5.1.4.1.1.3.1")


def smooth(shape: tuple[int, ...], top: int = 255, seed: int = 0) -> np.ndarray:
    """A smooth gradient with mild texture in [0, top] (compresses well, so lossy errors stay small)."""
    rng = np.random.default_rng(seed)
    h, w = shape[:2]
    yy, xx = np.mgrid[:h, :w]
    base = (yy / (h - 1) * 0.6 + xx / (w - 1) * 0.4) * top
    if len(shape) == 3:
        base = np.stack([base, base[::-1], base[:, ::-1]], axis=-1)
    return np.clip(base + rng.normal(0, top / 200, base.shape), 0, top).round()


def header(
    shape: tuple[int, ...],
    photometric: str = "MONOCHROME2",
    *,
    bits: int = 8,
    frames: int | None = None,
    signed: bool = False,
    sop: str = US_IMAGE,
) -> FileDataset:
    """An image dataset's header (no pixel data) for frames of ``shape`` ((H, W) or (H, W, 3))."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop)
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.PatientID = "anon"
    ds.Rows, ds.Columns = shape[:2]
    ds.SamplesPerPixel = 3 if len(shape) == 3 else 1
    ds.PhotometricInterpretation = photometric
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = int(signed)
    if frames is not None:
        ds.NumberOfFrames = frames
    return ds


def native(arr: np.ndarray, photometric: str | None = None, *, bits: int = 8, frames: bool = False, signed: bool = False) -> FileDataset:
    """A dataset holding ``arr`` uncompressed ((N, H, W[, 3]) when ``frames``)."""
    shape = arr.shape[1:] if frames else arr.shape
    colour = len(shape) == 3
    ds = header(shape, photometric or ("RGB" if colour else "MONOCHROME2"), bits=bits, frames=arr.shape[0] if frames else None, signed=signed)
    dtype = f"{'i' if signed else 'u'}{1 if bits <= 8 else 2}"
    ds.PixelData = np.ascontiguousarray(arr, dtype=dtype).tobytes()
    return ds


def encapsulated(ds: FileDataset, fragments: list[bytes], syntax: str) -> FileDataset:
    """Put already encoded frames into ``ds`` under ``syntax``."""
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    ds.PixelData = encapsulate(fragments)
    ds["PixelData"].VR = "OB"
    return ds


def save(path: Path, ds: FileDataset, syntax: str | None = None) -> Path:
    """Write ``ds`` as a DICOM file (its pixel bytes swapped when ``syntax`` is big endian)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if syntax is not None:
        ds.file_meta.TransferSyntaxUID = UID(syntax)
    if ds.file_meta.TransferSyntaxUID == ExplicitVRBigEndian and ds.BitsAllocated == 16:
        ds.PixelData = np.frombuffer(ds.PixelData, dtype="<u2").astype(">u2").tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def jpeg_baseline(arr: np.ndarray, quality: int = 95) -> FileDataset:
    """An 8-bit JPEG baseline dataset made by Pillow (colour as YBR_FULL_422, 4:2:2 subsampled)."""
    buffer = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).save(buffer, "JPEG", quality=quality, subsampling=1)
    ds = header(arr.shape, "YBR_FULL_422" if arr.ndim == 3 else "MONOCHROME2")
    return encapsulated(ds, [buffer.getvalue()], JPEGBaseline8Bit)


def jpeg8(arr: np.ndarray, syntax: str, bits: int, *, lossless: bool, predictor: int | None = None) -> FileDataset:
    """A JPEG dataset made by imagecodecs (libjpeg-turbo): extended 12-bit lossy, or lossless with ``predictor``."""
    data = arr.astype(np.uint8 if bits <= 8 else np.uint16)
    encoded = imagecodecs.jpeg8_encode(data, level=95, lossless=lossless, predictor=predictor, bitspersample=bits)
    return encapsulated(header(arr.shape, bits=bits), [bytes(encoded)], syntax)
