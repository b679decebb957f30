"""Scanner-UI crop, preprocessing and augmentation."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from client.transforms import augment, crop_image, preprocess, ui_crop_box


def _screen() -> np.ndarray:
    """A 160x220 screen: speckle field at x 40..200, y 30..150, burned-in text and a ruler outside it."""
    rng = np.random.default_rng(1)
    screen = np.zeros((160, 220), np.uint8)
    screen[30:150, 40:200] = rng.gamma(4.0, 20.0, (120, 160)).clip(0, 255)
    img = Image.fromarray(screen)
    draw = ImageDraw.Draw(img)
    draw.text((2, 2), "GE LOGIQ E9  12L  MI 1.1", fill=255, font=ImageFont.load_default())
    for y in range(30, 150, 10):
        draw.line([(210, y), (215, y)], fill=255)
    return np.asarray(img, dtype=np.float32)


def test_auto_crop_keeps_the_field_and_drops_the_ui() -> None:
    x0, y0, x1, y1 = ui_crop_box(_screen())
    assert abs(x0 - 40) <= 4 and abs(x1 - 200) <= 4 and abs(y0 - 30) <= 4 and abs(y1 - 150) <= 4


def test_crop_settings() -> None:
    screen = _screen()
    assert crop_image(screen, "none")[0].shape == screen.shape
    cropped, mask = crop_image(screen, (40, 30, 200, 150), np.ones_like(screen, bool))
    assert cropped.shape == (120, 160) and mask is not None and mask.shape == (120, 160)


def test_preprocess_and_augment_shapes_and_range() -> None:
    out = preprocess(32)(torch.as_tensor(_screen()[None]))
    assert tuple(out.shape) == (1, 32, 32) and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    aug = augment(32)
    aug.set_random_state(0)
    mask = torch.zeros(1, 32, 32)
    mask[:, 10:20, 12:22] = 1
    moved = aug({"image": out, "mask": mask})
    assert tuple(moved["image"].shape) == (1, 32, 32) and tuple(moved["mask"].shape) == (1, 32, 32)
    assert set(torch.unique(moved["mask"]).tolist()) <= {0.0, 1.0}  # nearest neighbour keeps the mask binary


def test_augment_moves_image_and_mask_together() -> None:
    image = torch.zeros(1, 32, 32)
    image[:, 8:16, 4:12] = 1.0  # a bright square that is also the mask
    for seed in range(6):
        aug = augment(32)
        aug.set_random_state(seed)
        moved = aug({"image": image.clone(), "mask": (image > 0.5).float()})
        inside = moved["mask"] > 0.5
        if inside.any():
            assert float(moved["image"][inside].mean()) > float(moved["image"][~inside].mean()) + 0.5
