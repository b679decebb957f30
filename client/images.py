"""Read PNG/JPEG/BMP/TIFF and DICOM images as 2D float32 grayscale arrays.

DICOM is decoded by ``client/dicom.py`` (its frame, LUT and image-area rules are written there).
One pixel limit holds for rasters and DICOM alike: Pillow's ``Image.MAX_IMAGE_PIXELS``, read at each
call (None: no limit). A raster over it fails at Pillow's DecompressionBombWarning as well as at its
DecompressionBombError; a DICOM fails when its header's Rows x Columns x SamplesPerPixel is over it,
before any decoding.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from client.dicom import Box, decode_dicom
from client.errors import SiteDataError

_DICOM_SUFFIXES = (".dcm", ".dicom")
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601 luminance of RGB


@dataclass(frozen=True)
class DecodedImage:
    """An image as (H, W) float32 grayscale and, when the file gives one, its ultrasound image area (x0, y0, x1, y1), ends exclusive."""

    pixels: np.ndarray
    region: Box | None = None


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


def pixel_limit() -> int | None:
    """The most pixels an image may have (Pillow's MAX_IMAGE_PIXELS, read now; None for none)."""
    limit = Image.MAX_IMAGE_PIXELS
    return None if limit is None else int(limit)


def decode_image(path: Path) -> DecodedImage:
    """The image as (H, W) float32 (colour converted to luminance) and its ultrasound image area, if any."""
    path = Path(path)
    region = None
    if is_dicom(path):
        frame = decode_dicom(path, pixel_limit())
        pixels, region = frame.pixels, frame.region
    else:
        pixels = read_raster(path)
    if pixels.ndim == 3:
        pixels = pixels[..., :3].astype(np.float32) @ LUMA
    if pixels.ndim != 2 or min(pixels.shape) < 8:
        raise SiteDataError(f"image {path}: unexpected shape {pixels.shape}", "image: unexpected shape")
    return DecodedImage(pixels.astype(np.float32), region)


def read_image(path: Path) -> np.ndarray:
    """Return the image as (H, W) float32; colour is converted to luminance."""
    return decode_image(path).pixels


def read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """Return a lesion mask as a (H, W) bool array of the image's shape."""
    mask = read_image(path) > 0
    if mask.shape != shape:
        raise SiteDataError(
            f"mask {path}: shape {mask.shape} differs from its image's {shape}", "mask: shape differs from image"
        )
    return mask


def open_raster(path: Path) -> Image.Image:
    """Open a raster lazily (no pixels decoded); over the pixel limit, or unknown or cut, it fails naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise SiteDataError(
            f"image {path}: over the decoder's pixel limit (PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}): {err}",
            "image exceeds the decoder's pixel limit",
        ) from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise SiteDataError(f"image {path}: cannot be decoded: {err}", "image file cannot be decoded") from err


def read_raster(path: Path) -> np.ndarray:
    """Decode a raster image with Pillow, failing clearly on truncated, unknown or oversized files."""
    with open_raster(path) as img:
        try:
            img.load()
            if img.mode in ("P", "PA", "LA", "CMYK", "YCbCr", "HSV", "1"):
                img = img.convert("RGB" if img.mode != "1" else "L")
            return np.asarray(img)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise SiteDataError(f"image {path}: cannot be decoded: {err}", "image file cannot be decoded") from err
