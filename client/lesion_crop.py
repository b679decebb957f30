"""The fully automatic pipeline's crop: from a predicted lesion mask to the classifier's input.

Largest predicted lesion (8-connected component), its smallest bounding box grown by a margin
(pixels, clipped to the image), the image cropped to it, min-max normalised to [0, 1] and resized
to the classifier's size (area interpolation; the mask with nearest neighbour, so it stays binary).
An image with no predicted lesion keeps its whole field of view, and is flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from monai.transforms import Resize
from scipy import ndimage

Box = tuple[int, int, int, int]  # row0, row1, col0, col1 (half-open)


@dataclass(frozen=True)
class LesionCrop:
    """A classifier input cut from one image."""

    image: np.ndarray  # (size, size) float32 in [0, 1]
    mask: np.ndarray  # (size, size) uint8 in {0, 1}
    box: Box
    lesion_found: bool


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected foreground component of a 2D mask (all False if none)."""
    labels, count = ndimage.label(mask != 0, structure=np.ones((3, 3), dtype=int))
    if count == 0:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


def bounding_box(mask: np.ndarray, margin: int = 0) -> Box | None:
    """Smallest box holding the mask's foreground, grown by ``margin`` pixels and clipped to the image."""
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    h, w = mask.shape
    return max(0, rows.min() - margin), min(h, rows.max() + 1 + margin), max(0, cols.min() - margin), min(w, cols.max() + 1 + margin)


def crop_lesion(image: np.ndarray, predicted: np.ndarray, size: int, margin: int = 8) -> LesionCrop:
    """Cut the largest predicted lesion out of a 2D ``image`` for the classifier."""
    if image.shape != predicted.shape:
        raise ValueError(f"image {image.shape} and mask {predicted.shape} differ in shape")
    lesion = largest_component(predicted)
    box = bounding_box(lesion, margin)
    found = box is not None
    r0, r1, c0, c1 = box if box is not None else (0, image.shape[0], 0, image.shape[1])
    patch = image[r0:r1, c0:c1].astype(np.float32)
    low, high = float(patch.min()), float(patch.max())
    patch = (patch - low) / (high - low) if high > low else np.zeros_like(patch)
    resized = Resize((size, size), mode="area")(torch.from_numpy(patch)[None])[0].numpy()
    mask = Resize((size, size), mode="nearest")(torch.from_numpy(lesion[r0:r1, c0:c1].astype(np.float32))[None])[0].numpy()
    return LesionCrop(np.clip(resized, 0.0, 1.0).astype(np.float32), mask.astype(np.uint8), (int(r0), int(r1), int(c0), int(c1)), found)
