"""Clip transforms: one UI crop per loop, and augmentation drawn once and applied to every frame alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from client.cine import Cine
from client.clip_transforms import clip_augment, clip_preprocess, crop_loop
from client.transforms import ui_crop_box


def _loop(frames: int = 5, seed: int = 0) -> np.ndarray:
    """Frames with a bright field of view (its speckle differs frame to frame) inside a dark UI margin with burned-in text."""
    rng = np.random.default_rng(seed)
    loop = np.zeros((frames, 64, 80), np.float32)
    loop[:, 10:58, 12:70] = 100 + 40 * rng.random((frames, 48, 58))
    loop[:, 2:5, 2:30] = 255  # text above the field
    return loop


def test_the_ui_crop_is_found_once_on_the_mean_frame_and_cuts_every_frame_alike() -> None:
    loop = _loop()
    box = ui_crop_box(loop.mean(axis=0))
    cropped = crop_loop(Cine(loop, 33.0, None), "auto")
    x0, y0, x1, y1 = box
    np.testing.assert_array_equal(cropped, loop[:, y0:y1, x0:x1])
    assert (y0, x0) >= (8, 10) and cropped.shape[0] == 5  # the text row is outside
    region = crop_loop(Cine(loop, 33.0, (12, 10, 70, 58)), "auto")  # a DICOM ultrasound region wins over the heuristic
    np.testing.assert_array_equal(region, loop[:, 10:58, 12:70])
    rgb = np.repeat(loop[..., None], 3, axis=-1)
    np.testing.assert_allclose(crop_loop(Cine(rgb, None, None), "none"), loop, rtol=1e-5)  # colour frames as luminance


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_augmentation_draws_once_and_moves_every_frame_alike(seed: int) -> None:
    base = clip_preprocess(32)(_loop(1, seed))[0].numpy()  # one preprocessed frame
    clip = np.stack([base * (k + 1) for k in range(4)])  # frame k = (k + 1) x frame 0
    augment = clip_augment(32)
    augment.set_random_state(seed)
    for transform in augment.transforms:  # every random step fires, so a torn clip cannot pass unnoticed
        if hasattr(transform, "prob"):
            transform.prob = 1.0
    out = augment(torch.as_tensor(clip)).numpy()
    assert out.shape == (4, 32, 32)
    for k in range(1, 4):  # linear interpolation keeps the frames' ratio only if they share one geometry
        np.testing.assert_allclose(out[k], out[0] * (k + 1), rtol=1e-4, atol=1e-4)
    assert not np.allclose(out[0], base, atol=1e-3)  # and it did move them


def test_preprocess_scales_the_whole_clip_together() -> None:
    loop = _loop(3)
    loop[2] *= 0.5  # a darker frame stays darker
    out = clip_preprocess(16)(loop).numpy()
    assert out.shape == (3, 16, 16) and out.min() >= 0 and out.max() <= 1
    assert out[2].mean() < out[0].mean()
