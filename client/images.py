"""Read PNG/JPEG/BMP/TIFF and DICOM images as 2D float32 grayscale arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from PIL import Image, UnidentifiedImageError
from pydicom.errors import InvalidDicomError

from client.errors import SiteDataError

_DICOM_SUFFIXES = (".dcm", ".dicom")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def is_dicom(path: Path) -> bool:
    """Tell DICOM by suffix or by the 'DICM' preamble marker."""
    if path.suffix.lower() in _DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def read_image(path: Path) -> np.ndarray:
    """Return the image as (H, W) float32; colour is converted to luminance."""
    path = Path(path)
    pixels = _read_dicom(path) if is_dicom(path) else _read_raster(path)
    if pixels.ndim == 3:
        pixels = pixels[..., :3].astype(np.float32) @ _LUMA
    if pixels.ndim != 2 or min(pixels.shape) < 8:
        raise SiteDataError(f"image {path}: unexpected shape {pixels.shape}", "image: unexpected shape")
    return pixels.astype(np.float32)


def read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """Return a lesion mask as a (H, W) bool array of the image's shape."""
    mask = read_image(path) > 0
    if mask.shape != shape:
        raise SiteDataError(
            f"mask {path}: shape {mask.shape} differs from its image's {shape}", "mask: shape differs from image"
        )
    return mask


def _read_raster(path: Path) -> np.ndarray:
    """Decode a raster image with Pillow, failing clearly on truncated or unknown files."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("P", "PA", "LA", "CMYK", "YCbCr", "HSV", "1"):
                img = img.convert("RGB" if img.mode != "1" else "L")
            return np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise SiteDataError(f"image {path}: cannot be decoded: {err}", "image file cannot be decoded") from err


def _read_dicom(path: Path) -> np.ndarray:
    """Decode a single-frame DICOM image; pydicom returns YBR as RGB, MONOCHROME1 is inverted here."""
    try:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
    except (InvalidDicomError, OSError, ValueError, AttributeError, EOFError, KeyError) as err:
        raise SiteDataError(f"DICOM {path}: unreadable or truncated: {err}", "DICOM file unreadable or truncated") from err
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        raise SiteDataError(
            f"DICOM {path}: {frames} frames; multi-frame cine belongs in the 'video' column",
            "DICOM: multi-frame file in the image column",
        )
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "MONOCHROME1":
        pixels = pixels.max() - pixels
    return np.asarray(pixels)
