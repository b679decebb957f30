"""The patches of one case's H&E input: a micrograph tiled on a grid, or a folder of patch images (as BCNB ships them).

Rules:

* Colour: every image is read as uint8 RGB: grayscale is repeated, 16-bit grayscale scaled by
  1/257, transparency composited onto white (transparent is background, not tissue).
* Normalisation (``"none"``, ``"macenko"``, ``"reinhard"``) is applied to the whole micrograph, or to
  each folder image, before tiling. Macenko re-stains to Macenko's published reference H&E matrix
  and maximum concentrations (``client.stain``); an image with too little tissue for a stain
  estimate is kept as it is. Reinhard's target (no published CIELAB target is in
  ``client.stain``) is the LAB mean and standard deviation of a reference tile rendered from that
  same published matrix, its H and E concentrations on an even 64 x 64 grid over
  [0, maximum concentration]: ``REINHARD_MEANS`` and ``REINHARD_STDS``.
* A micrograph is cut into non-overlapping patch_size tiles, row by row (the right and bottom rest
  that is not a whole tile is dropped); smaller than one tile in a dimension, it is first enlarged
  (bilinear, aspect kept) until one tile fits. A folder's images (natural name order, ``patch2``
  before ``patch10``; .png, .jpg, .jpeg, .tif, .tiff, .bmp) are each resized to patch_size (bilinear).
* Of more than ``max_patches`` patches, those with the most tissue are kept: the fraction of pixels
  whose optical density (``client.stain.optical_density``), averaged over R, G and B, is at least
  ``TISSUE_OD``; ties go to the earlier patch. The kept patches come back in grid or name order.

Errors are ``SiteDataError``: the message names the path, the public text does not.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from client.errors import SiteDataError
from client.images import open_raster
from client.stain import (
    MACENKO_IO, REFERENCE_MATRIX, REFERENCE_MAX, lab_statistics, macenko_normalise, optical_density, reinhard_normalise,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
NORMALISATIONS = ("none", "macenko", "reinhard")
MIN_PATCH_SIZE = 8
TISSUE_OD = 0.15  # Macenko's background cut-off (beta), on the mean OD of a pixel
_REFERENCE_GRID = 64


def reference_tile() -> np.ndarray:
    """(64, 64, 3) uint8 H&E tile of the published Macenko reference matrix, concentrations on an even grid over [0, max]."""
    grid = np.linspace(0.0, 1.0, _REFERENCE_GRID)
    h, e = np.meshgrid(grid * REFERENCE_MAX[0], grid * REFERENCE_MAX[1], indexing="ij")
    od = np.stack([h.ravel(), e.ravel()]).T @ REFERENCE_MATRIX.T
    rgb = MACENKO_IO * np.exp(-od) - 1.0
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8).reshape(_REFERENCE_GRID, _REFERENCE_GRID, 3)


REINHARD_MEANS, REINHARD_STDS = lab_statistics(reference_tile())


def read_patches(path: Path, patch_size: int, max_patches: int, normalise: str = "none") -> np.ndarray:
    """(P, 3, patch_size, patch_size) uint8 patches of a micrograph or a patch folder, 1 <= P <= max_patches (module rules)."""
    path = Path(path)
    if patch_size < MIN_PATCH_SIZE:
        raise SiteDataError(
            f"pathology {path}: patch size {patch_size} is below {MIN_PATCH_SIZE}", f"pathology: patch size {patch_size} is below {MIN_PATCH_SIZE}"
        )
    if max_patches < 1:
        raise SiteDataError(f"pathology {path}: max_patches {max_patches}; it must be at least 1", "pathology: max_patches must be at least 1")
    if normalise not in NORMALISATIONS:
        raise ValueError(f"normalise {normalise!r}; expected one of {', '.join(NORMALISATIONS)}")
    if path.is_dir():
        patches = np.stack([_resized(normalise_stain(read_rgb(f), normalise), patch_size) for f in patch_files(path)])
    else:
        patches = tile(_fit_one_tile(normalise_stain(read_rgb(path), normalise), patch_size), patch_size)
    kept = most_tissue(patches, max_patches)
    return np.ascontiguousarray(patches[kept].transpose(0, 3, 1, 2))


def patch_files(folder: Path) -> list[Path]:
    """The folder's image files in natural name order; an empty folder, or one without images, fails naming it."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if not entries:
        raise SiteDataError(f"pathology folder {folder}: empty", "pathology folder is empty")
    files = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise SiteDataError(
            f"pathology folder {folder}: no image files ({', '.join(IMAGE_SUFFIXES)})", "pathology folder holds no image files"
        )
    return sorted(files, key=lambda p: (natural_key(p.name), p.name))


def natural_key(name: str) -> list[str | int]:
    """Sort key that compares digit runs as numbers: 'patch2' before 'patch10'."""
    return [int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", name.lower()))]


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file: grayscale repeated, 16-bit scaled, transparency over white."""
    with open_raster(path) as img:
        try:
            img.load()
            return _as_rgb(img)
        except (OSError, SyntaxError, ValueError) as err:
            raise SiteDataError(f"pathology image {path}: cannot be decoded: {err}", "pathology image cannot be decoded") from err


def _as_rgb(img: Image.Image) -> np.ndarray:
    """uint8 RGB of a loaded Pillow image."""
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        values = np.asarray(img, dtype=np.float64)
        gray = values / 257.0 if values.max() > 255 else values
        return np.repeat(np.clip(np.rint(gray), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def normalise_stain(rgb: np.ndarray, method: str) -> np.ndarray:
    """The image re-stained by ``method`` ("none", "macenko", "reinhard"; targets in the module rules)."""
    if method == "macenko":
        try:
            return macenko_normalise(rgb)
        except ValueError:  # too little tissue to estimate its stains
            return rgb
    if method == "reinhard":
        return reinhard_normalise(rgb, REINHARD_MEANS, REINHARD_STDS)
    return rgb


def _fit_one_tile(rgb: np.ndarray, patch_size: int) -> np.ndarray:
    """The image enlarged (aspect kept) when one side is shorter than a tile."""
    h, w = rgb.shape[:2]
    if min(h, w) >= patch_size:
        return rgb
    scale = patch_size / min(h, w)
    return _resize_rgb(rgb, (max(patch_size, int(np.ceil(w * scale))), max(patch_size, int(np.ceil(h * scale)))))


def tile(rgb: np.ndarray, patch_size: int) -> np.ndarray:
    """(rows * cols, patch_size, patch_size, 3) non-overlapping tiles, row by row; the rest past the last whole tile dropped."""
    rows, cols = rgb.shape[0] // patch_size, rgb.shape[1] // patch_size
    grid = rgb[: rows * patch_size, : cols * patch_size].reshape(rows, patch_size, cols, patch_size, 3)
    return grid.transpose(0, 2, 1, 3, 4).reshape(rows * cols, patch_size, patch_size, 3)


def tissue_fraction(patch: np.ndarray) -> float:
    """The fraction of a (H, W, 3) uint8 patch's pixels whose mean optical density is at least ``TISSUE_OD``."""
    return float((optical_density(patch).mean(axis=2) >= TISSUE_OD).mean())


def most_tissue(patches: np.ndarray, max_patches: int) -> np.ndarray:
    """Indices of the ``max_patches`` patches with the most tissue (ties: earlier first), in ascending order."""
    fractions = np.array([tissue_fraction(p) for p in patches])
    ranked = sorted(range(len(patches)), key=lambda i: (-fractions[i], i))
    return np.sort(np.array(ranked[:max_patches], dtype=np.int64))


def _resized(rgb: np.ndarray, patch_size: int) -> np.ndarray:
    """A patch resized to patch_size x patch_size."""
    return rgb if rgb.shape[:2] == (patch_size, patch_size) else _resize_rgb(rgb, (patch_size, patch_size))


def _resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 RGB resized (bilinear) to ``size`` (W, H)."""
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
