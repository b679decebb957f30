"""Lesion crops of a whole site: cut with ground-truth masks or with a (fused) segmenter's prediction."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from client.data import load_site_data
from client.lesion_data import lesion_site_data, state_digest
from client.site_config import load_site_config
from models.run_config import RunConfig
from tests.conftest import make_site


class DarkIsLesion(nn.Module):
    """A stand-in segmenter with a known answer: dark pixels (the test images' disc) are lesion."""

    def __init__(self, level: float) -> None:
        super().__init__()
        self.level = level

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.level - x) * 50.0


def _centre_darker_than_border(images: torch.Tensor) -> bool:
    centre = images[:, 0, 10:14, 10:14].mean(dim=(1, 2))
    border = torch.cat([images[:, 0, 0, :], images[:, 0, -1, :], images[:, 0, :, 0], images[:, 0, :, -1]], dim=1).mean(dim=1)
    return bool((centre < border).all())


def test_ground_truth_and_predicted_crops_centre_the_lesion(tmp_path: Path) -> None:
    base = load_site_data(load_site_config(make_site(tmp_path, "c", n=12, seed=5, masks=True)), 32)
    cfg = RunConfig(image_size=24, seg_image_size=32, crop_margin=2, segmenters="unet")
    truth = lesion_site_data(base, cfg.replace(lesion_crop="mask"))
    predicted = lesion_site_data(base, cfg.replace(lesion_crop="predicted"), DarkIsLesion(0.15), "dark")
    for data in (truth, predicted):
        assert data.image_size == 24 and sum(data.crops_without_lesion.values()) == 0
        for name, split in data.splits.items():
            assert tuple(split.images.shape[1:]) == (1, 24, 24) and torch.equal(split.labels, base.splits[name].labels)
            assert float(split.images.min()) >= 0.0 and float(split.images.max()) <= 1.0
            if len(split):
                assert _centre_darker_than_border(split.images)
    whole = base.splits["train"].images
    # a crop is a zoom: the disc fills far more of the crop than of the whole image
    assert float((truth.splits["train"].images < 0.3).float().mean()) > 2 * float((whole < 0.3).float().mean())
    assert lesion_site_data(base, cfg.replace(lesion_crop="predicted"), DarkIsLesion(0.15), "dark") is predicted  # cached


def test_no_predicted_lesion_keeps_the_whole_image_and_is_counted(tmp_path: Path) -> None:
    base = load_site_data(load_site_config(make_site(tmp_path, "c", n=10, seed=6)), 32)  # no masks: fully automatic
    cfg = RunConfig(image_size=24, seg_image_size=32, lesion_crop="predicted", segmenters="unet")
    data = lesion_site_data(base, cfg, DarkIsLesion(-1.0), "nothing")
    assert sum(data.crops_without_lesion.values()) == 10 and data.crops_without_lesion == {n: len(s) for n, s in data.splits.items()}
    assert sum(len(s) for s in data.splits.values()) == 10


def test_state_digest_tells_weights_apart() -> None:
    a = {"unet": {"w": torch.zeros(3)}}
    b = {"unet": {"w": torch.tensor([0.0, 0.0, 1e-6])}}
    assert state_digest(a) == state_digest({"unet": {"w": torch.zeros(3)}}) and state_digest(a) != state_digest(b)
