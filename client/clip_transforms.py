"""Cine clips through the image pipeline: one UI crop per loop, then resize, intensity scaling and augmentation shared by every frame.

A clip is (T, H, W) grayscale (colour frames are converted to luminance first, as still images are).
The frames travel as the channels of one 2D image, so every MONAI transform below draws its
random parameters once and applies them to every frame alike: seed 001's augmentation (horizontal
flip, elastic deformation, random crop) never tears a clip apart in space.
"""

from __future__ import annotations

import numpy as np
from monai.transforms import (
    Compose, EnsureType, Rand2DElastic, RandFlip, RandGaussianSmooth, RandScaleCrop, RandScaleIntensity, Resize, ScaleIntensityRangePercentiles,
)

from client.cine import Cine
from client.images import LUMA
from client.transforms import CropSetting, crop_image, ui_crop_box


def luminance(frames: np.ndarray) -> np.ndarray:
    """(T, H, W[, 3]) frames as (T, H, W) float32 grayscale."""
    if frames.ndim == 4:
        return frames[..., :3].astype(np.float32) @ LUMA
    return frames.astype(np.float32)


def crop_loop(cine: Cine, setting: CropSetting) -> np.ndarray:
    """The loop's frames as grayscale, cropped to one box for the whole loop.

    ``auto``: the DICOM ultrasound region when the file has one, else the heuristic field of view
    (``client/transforms.ui_crop_box``) of the loop's mean frame, where speckle averages out and the
    burned-in UI stays; ``none`` or an explicit box as for still images.
    """
    frames = luminance(cine.frames)
    box: CropSetting = cine.region if setting == "auto" and cine.region is not None else setting
    if box == "auto":
        box = ui_crop_box(frames.mean(axis=0))
    return np.stack([crop_image(frame, box)[0] for frame in frames])


def clip_preprocess(size: int) -> Compose:
    """Deterministic steps of a (T, H, W) clip: every frame resized to ``size`` px, the clip's 1st-99th percentile scaled to [0, 1]."""
    return Compose(
        [
            Resize((size, size), mode="area"),
            ScaleIntensityRangePercentiles(lower=1, upper=99, b_min=0.0, b_max=1.0, clip=True),
        ]
    )


def clip_augment(size: int) -> Compose:
    """Seed 001's training augmentation of a (T, size, size) clip, the same draw for every frame: flip, elastic, random crop.

    Then a blur and a gain change (drawn once per clip, linear in the pixels), as scanners differ in
    speckle grain and gain: what the still path's contrast and noise steps do for key frames.
    """
    return Compose(
        [
            RandFlip(prob=0.5, spatial_axis=1),  # horizontal only: shadows fall downwards
            Rand2DElastic(spacing=(size // 4, size // 4), magnitude_range=(0.0, 1.0), prob=0.3, padding_mode="zeros"),
            RandScaleCrop(roi_scale=0.85, max_roi_scale=1.0, random_size=True),
            Resize((size, size), mode="bilinear"),
            RandGaussianSmooth(sigma_x=(0.25, 1.0), sigma_y=(0.25, 1.0), prob=0.3),
            RandScaleIntensity(factors=0.2, prob=0.3),
            EnsureType(track_meta=False),
        ]
    )
