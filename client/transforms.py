"""Image preprocessing: scanner-UI crop, then MONAI resize, intensity scaling and augmentation."""

from __future__ import annotations

import logging

import numpy as np
from monai.transforms import (
    Compose,
    EnsureTyped,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    Resize,
    ScaleIntensityRangePercentiles,
)
from monai.transforms.utils import generate_spatial_bounding_box
from scipy import ndimage

logger = logging.getLogger("axilla.client")

CropSetting = str | tuple[int, int, int, int]


def ui_crop_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """Find the ultrasound field of view, leaving out burned-in text, rulers and margins.

    The field is the largest connected region of smoothed, non-dark pixels after an opening
    that erases thin text and lines. Returns ``(x0, y0, x1, y1)``; the whole image if no
    plausible field is found.
    """
    h, w = image.shape
    scale = max(float(np.percentile(image, 99.5)), 1e-6)
    smooth = ndimage.uniform_filter(image / scale, size=max(3, min(h, w) // 40))
    field = smooth > 0.04
    radius = max(2, min(h, w) // 60)
    # opening by a square, as separable min/max filters (outside the image counts as background)
    size = 2 * radius + 1
    field = ndimage.maximum_filter(ndimage.minimum_filter(field, size=size, mode="constant", cval=0), size=size, mode="constant", cval=0)
    if not field.any():
        return (0, 0, w, h)
    labels, count = ndimage.label(field)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    largest = ndimage.binary_fill_holes(labels == int(sizes.argmax()))
    (y0, x0), (y1, x1) = generate_spatial_bounding_box(largest[None])
    if (x1 - x0) * (y1 - y0) < 0.2 * h * w:
        logger.warning("auto crop found no plausible field of view; using the whole image")
        return (0, 0, w, h)
    return (int(x0), int(y0), int(x1), int(y1))


def crop_image(image: np.ndarray, setting: CropSetting, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply the site's crop setting to an image (and its mask)."""
    h, w = image.shape
    if setting == "none":
        box = (0, 0, w, h)
    elif setting == "auto":
        box = ui_crop_box(image)
    else:
        x0, y0, x1, y1 = setting  # type: ignore[misc]
        box = (min(x0, w - 1), min(y0, h - 1), min(x1, w), min(y1, h))
    x0, y0, x1, y1 = box
    return image[y0:y1, x0:x1], None if mask is None else mask[y0:y1, x0:x1]


def preprocess(size: int) -> Compose:
    """Deterministic steps: resize to ``size`` px and scale the 1st-99th percentile to [0, 1]."""
    return Compose(
        [
            Resize((size, size), mode="area"),
            ScaleIntensityRangePercentiles(lower=1, upper=99, b_min=0.0, b_max=1.0, clip=True),
        ]
    )


def preprocess_mask(size: int) -> Resize:
    """A lesion mask's deterministic step: nearest-neighbour resize to ``size`` px, so it stays binary."""
    return Resize((size, size), mode="nearest")


def augment(size: int) -> Compose:
    """Training augmentation of a case dict (``image``, ``mask``) that keeps ultrasound geometry.

    Flips and affine moves apply to image and mask together (the mask with nearest-neighbour
    interpolation); contrast and noise to the image only. No vertical flips: shadows fall downwards.
    """
    keys = ("image", "mask")
    return Compose(
        [
            RandFlipd(keys=keys, prob=0.5, spatial_axis=1),
            RandAffined(
                keys=keys,
                prob=0.7,
                rotate_range=0.15,
                scale_range=0.1,
                translate_range=(size * 0.06, size * 0.06),
                padding_mode="zeros",
                mode=("bilinear", "nearest"),
            ),
            RandAdjustContrastd(keys="image", prob=0.3, gamma=(0.8, 1.25)),
            RandGaussianNoised(keys="image", prob=0.2, std=0.03),
            EnsureTyped(keys=keys, track_meta=False),
        ]
    )
