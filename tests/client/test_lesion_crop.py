"""Crop-box geometry of the fully automatic pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from client.lesion_crop import bounding_box, crop_lesion, largest_component


def test_largest_component_keeps_only_the_biggest_lesion_8_connected() -> None:
    mask = np.zeros((10, 10), np.uint8)
    mask[1, 1] = 1  # a speck
    mask[4, 4] = mask[5, 5] = mask[6, 6] = 1  # diagonal: one 8-connected component of 3
    assert largest_component(mask).sum() == 3 and largest_component(mask)[5, 5]
    assert not largest_component(np.zeros((4, 4))).any()


def test_bounding_box_is_tight_then_grown_by_the_margin_and_clipped() -> None:
    mask = np.zeros((20, 30), bool)
    mask[5:9, 10:20] = True
    assert bounding_box(mask) == (5, 9, 10, 20)
    assert bounding_box(mask, margin=3) == (2, 12, 7, 23)
    assert bounding_box(mask, margin=8) == (0, 17, 2, 28)  # clipped at the top edge
    assert bounding_box(np.zeros((4, 4), bool)) is None
    with pytest.raises(ValueError, match="margin"):
        bounding_box(mask, margin=-1)


def test_crop_is_min_max_normalised_resized_and_its_mask_stays_binary() -> None:
    image = np.full((40, 60), 50.0)
    image[10:20, 30:50] = np.linspace(100, 200, 20)[None, :]
    predicted = np.zeros((40, 60), np.uint8)
    predicted[10:20, 30:50] = 1
    predicted[0:2, 0:2] = 1  # a smaller false positive, ignored
    crop = crop_lesion(image, predicted, size=16, margin=2)
    assert crop.lesion_found and crop.box == (8, 22, 28, 52)
    assert crop.image.shape == (16, 16) and crop.image.min() == pytest.approx(0.0) and crop.image.max() <= 1.0
    assert set(np.unique(crop.mask)) == {0, 1} and crop.mask[8, 8] == 1 and crop.mask[0, 0] == 0


def test_no_predicted_lesion_keeps_the_whole_image_and_says_so() -> None:
    crop = crop_lesion(np.arange(100.0).reshape(10, 10), np.zeros((10, 10)), size=8)
    assert not crop.lesion_found and crop.box == (0, 10, 0, 10) and crop.mask.sum() == 0
    assert crop.image.min() < 0.1 and crop.image.max() > 0.9  # normalised, then area-resized 10 -> 8
