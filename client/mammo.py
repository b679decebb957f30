"""One mammogram view for the two-view classifier: read, orient, find the breast, crop, pad and resize.

Conventions:

* Intensity: the decoded image (``client.images.decode_image``: DICOM LUTs, MONOCHROME1 inverted,
  PNG/TIFF of any depth) is scaled linearly so that its 1st percentile maps to 0 and its 99.5th to
  1, then clipped to [0, 1]; bright is dense tissue in every file.
* Orientation: every prepared view has the chest wall on the LEFT and the nipple pointing right.
  Files are taken to follow the standard mammography display (DICOM MG / IHE): a right breast's
  chest wall on the image's right, a left breast's on its left. So "R" views are flipped
  horizontally and "L" views kept; a view without laterality is flipped when its right half holds
  more intensity than its left (the chest wall side carries the most tissue).
* Breast region: Otsu's threshold, a morphological opening (drops specks and thin lines) and closing
  (fills gaps), the largest 8-connected component, its bounding box grown by a small margin.
* Square: the crop is padded with zeros on the right (away from the chest wall) when taller than
  wide, evenly above and below when wider than tall, then resized (bilinear; masks nearest).

Errors are ``SiteDataError``: the message names the file, the public text does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from client.dicom import read_header
from client.errors import SiteDataError
from client.images import decode_image, is_dicom
from client.lesion_crop import bounding_box, largest_component

LOW_PERCENTILE, HIGH_PERCENTILE = 1.0, 99.5
OTSU_BINS = 256
MORPHOLOGY_RADIUS = 2  # 5 x 5 structuring element of the opening and closing
MARGIN_FRACTION = 0.02  # the breast box grows by 2% of the image's longer side (at least 2 pixels)
LATERALITIES = ("L", "R")


@dataclass(frozen=True)
class MammoView:
    """One view: (H, W) float32 pixels in [0, 1] and the breast's laterality ("L", "R", or "" when unknown)."""

    pixels: np.ndarray
    laterality: str


def read_view(path: Path) -> MammoView:
    """Decode a mammogram, scale it robustly to [0, 1] and read its laterality from the DICOM header."""
    path = Path(path)
    pixels = scale_unit(decode_image(path).pixels)
    return MammoView(pixels, read_laterality(path) if is_dicom(path) else "")


def scale_unit(pixels: np.ndarray) -> np.ndarray:
    """Linearly map the 1st..99.5th percentiles to 0..1 and clip (min..max when those coincide; zeros when flat)."""
    values = pixels.astype(np.float64)
    low, high = np.percentile(values, [LOW_PERCENTILE, HIGH_PERCENTILE])
    if high <= low:
        low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(pixels.shape, dtype=np.float32)
    return np.clip((values - low) / (high - low), 0.0, 1.0).astype(np.float32)


def read_laterality(path: Path) -> str:
    """ImageLaterality (0020,0062), else Laterality (0020,0060), as "L" or "R"; "" when neither says one."""
    header = read_header(path)
    for keyword in ("ImageLaterality", "Laterality"):
        value = str(header.get(keyword, "") or "").strip().upper()
        if value in LATERALITIES:
            return value
    return ""


def chest_wall_on_right(pixels: np.ndarray, laterality: str) -> bool:
    """Whether the view must be flipped: "R" yes, "L" no, unknown when the right half holds more intensity."""
    if laterality in LATERALITIES:
        return laterality == "R"
    if laterality:
        raise ValueError(f"laterality {laterality!r}; expected 'L', 'R' or ''")
    half = pixels.shape[1] // 2
    return float(pixels[:, pixels.shape[1] - half :].sum()) > float(pixels[:, :half].sum())


def orient(pixels: np.ndarray, laterality: str) -> np.ndarray:
    """The view with its chest wall on the left (flipped horizontally when it is on the right)."""
    return pixels[:, ::-1].copy() if chest_wall_on_right(pixels, laterality) else pixels


def otsu_threshold(values: np.ndarray, bins: int = OTSU_BINS) -> float:
    """Otsu's threshold over a ``bins``-bin histogram of min..max: the upper edge of the last background bin (foreground is >= it)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return high
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    centres = (edges[:-1] + edges[1:]) / 2
    weight0 = np.cumsum(counts)[:-1].astype(np.float64)  # background: bins 0..k, for k = 0..bins-2
    weight1 = counts.sum() - weight0
    mass0 = np.cumsum(counts * centres)[:-1]
    mean0 = mass0 / np.maximum(weight0, 1)
    mean1 = ((counts * centres).sum() - mass0) / np.maximum(weight1, 1)
    between = weight0 * weight1 * (mean0 - mean1) ** 2  # the between-class variance times N^2
    return float(edges[int(np.argmax(between)) + 1])


def breast_box(pixels: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1), ends exclusive, of the breast: the largest bright region, with a margin; a blank image gives the whole image."""
    h, w = pixels.shape
    whole = (0, 0, h, w)
    if float(pixels.max()) <= float(pixels.min()):
        return whole
    foreground = pixels >= otsu_threshold(pixels)
    structure = _disk(MORPHOLOGY_RADIUS)
    padded = np.pad(foreground, MORPHOLOGY_RADIUS * 2, mode="edge")  # tissue at the border stays there through the closing
    cleaned = ndimage.binary_closing(ndimage.binary_opening(padded, structure), structure)
    cleaned = cleaned[MORPHOLOGY_RADIUS * 2 : -MORPHOLOGY_RADIUS * 2, MORPHOLOGY_RADIUS * 2 : -MORPHOLOGY_RADIUS * 2]
    margin = max(2, round(MARGIN_FRACTION * max(h, w)))
    box = bounding_box(largest_component(cleaned), margin)
    if box is None:
        return whole
    y0, y1, x0, x1 = (int(v) for v in box)
    return y0, x0, y1, x1


def _disk(radius: int) -> np.ndarray:
    """A (2r + 1)^2 boolean disk."""
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return yy**2 + xx**2 <= radius**2


def pad_square(pixels: np.ndarray) -> np.ndarray:
    """Zero-pad to a square: columns on the right (away from the chest wall), rows evenly above and below."""
    h, w = pixels.shape
    if h > w:
        return np.pad(pixels, ((0, 0), (0, h - w)))
    top = (w - h) // 2
    return np.pad(pixels, ((top, w - h - top), (0, 0)))


def prepare_view(path: Path, size: int, mask_path: Path | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The view as (1, size, size) float32, chest wall left, cropped to the breast; its mask (1, size, size) uint8 by the same steps, or None."""
    if size < 1:
        raise ValueError(f"size {size}; it must be at least 1")
    path = Path(path)
    view = read_view(path)
    flip = chest_wall_on_right(view.pixels, view.laterality)
    pixels = view.pixels[:, ::-1] if flip else view.pixels
    y0, x0, y1, x1 = breast_box(pixels)
    image = _resize(pad_square(pixels[y0:y1, x0:x1]).astype(np.float32), size, Image.Resampling.BILINEAR)
    image = np.clip(image, 0.0, 1.0)[None].astype(np.float32)
    if mask_path is None:
        return image, None
    mask = read_view_mask(Path(mask_path), path, view.pixels.shape)
    mask = mask[:, ::-1] if flip else mask
    resized = _resize(pad_square(mask[y0:y1, x0:x1]).astype(np.uint8), size, Image.Resampling.NEAREST)
    return image, (resized > 0)[None].astype(np.uint8)


def read_view_mask(mask_path: Path, view_path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A view's binary mask (nonzero is foreground); a shape other than the view's fails naming both files."""
    mask = decode_image(mask_path).pixels > 0
    if mask.shape != tuple(shape):
        raise SiteDataError(
            f"mask {mask_path}: shape {mask.shape} differs from its mammogram {view_path}'s {tuple(shape)}",
            "mammogram mask: shape differs from its view",
        )
    return mask


def _resize(pixels: np.ndarray, size: int, resample: Image.Resampling) -> np.ndarray:
    """Resize a 2D float32 or uint8 array to size x size with Pillow."""
    return np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).resize((size, size), resample))
