"""Tests for Grad-CAM heatmaps and their PNG overlays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from client.grad_cam import grad_cam_maps, target_layer, write_grad_cams
from models.classifiers import build_classifier

SIZE = 16


def identity_cnn() -> nn.Module:
    """conv(1x1, weight 1) -> ReLU -> global mean -> linear(weight 1): the logit is the image mean."""
    conv = nn.Conv2d(1, 1, kernel_size=1)
    linear = nn.Linear(1, 1)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
        linear.weight.fill_(1.0)
        linear.bias.zero_()
    return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), linear)


def corner_square(n: int = 2) -> torch.Tensor:
    """(n, 1, SIZE, SIZE) images, dim everywhere, with a bright 5x5 square in the top-left corner."""
    images = torch.full((n, 1, SIZE, SIZE), 0.1)
    images[:, :, :5, :5] = 1.0
    return images


def test_target_layer_is_the_last_conv2d() -> None:
    model = identity_cnn()
    assert target_layer(model) == "0"
    plain = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3), nn.Flatten())
    assert target_layer(plain) == "2"


def test_target_layer_of_the_small_resnet_skips_the_shortcut_conv() -> None:
    model = build_classifier("small", 1)
    modules = dict(model.named_modules())
    convs = [name for name, module in modules.items() if isinstance(module, nn.Conv2d)]
    name = target_layer(model)
    assert isinstance(modules[name], nn.Conv2d)
    assert name == [conv for conv in convs if "downsample" not in conv][-1] == "layer4.0.conv2"


def test_target_layer_without_conv2d_names_the_model() -> None:
    with pytest.raises(ValueError, match="Sequential"):
        target_layer(nn.Sequential(nn.Flatten(), nn.Linear(4, 1)))


@pytest.mark.parametrize("training", [True, False])
def test_grad_cam_maps_peak_inside_the_bright_square(training: bool) -> None:
    model = identity_cnn().train(training)
    maps = grad_cam_maps(model, corner_square())
    assert maps.shape == (2, SIZE, SIZE)
    assert maps.dtype == np.float32
    assert not np.isnan(maps).any()
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    for heatmap in maps:
        row, col = np.unravel_index(heatmap.argmax(), heatmap.shape)
        assert row < 5 and col < 5
        assert heatmap[:4, :4].min() > heatmap[8:, 8:].max()
    assert model.training is training


def test_grad_cam_maps_of_a_constant_map_are_zeros() -> None:
    maps = grad_cam_maps(identity_cnn(), torch.zeros(1, 1, SIZE, SIZE))
    assert maps.shape == (1, SIZE, SIZE)
    assert not np.isnan(maps).any()
    assert (maps == 0).all()


def test_grad_cam_maps_leave_the_model_as_it_was() -> None:
    torch.manual_seed(0)
    model = build_classifier("small", 1).train()
    layer = dict(model.named_modules())[target_layer(model)]
    before = {name: value.clone() for name, value in model.state_dict().items()}
    maps = grad_cam_maps(model, torch.rand(3, 1, 32, 32))
    assert maps.shape == (3, 32, 32)
    assert not np.isnan(maps).any()
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert model.training
    assert all(param.grad is None for param in model.parameters())
    assert not layer._forward_hooks and not layer._backward_hooks
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())


def test_grad_cam_maps_reject_an_unknown_layer() -> None:
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        grad_cam_maps(identity_cnn(), corner_square(), layer="nope")


def write(tmp_path: Path, max_cases: int, labels: list[int] | None = None) -> list[Path]:
    """Write overlays for five corner-square cases with awkward names."""
    scores = [0.9, 0.2, 0.7, 0.1, 0.55]
    names = ["a/b c", "case 2", "x.y", "../up", "ok-5"]
    return write_grad_cams(
        identity_cnn(), corner_square(5), scores, labels or [1, 0, 1, 0, 0], names, tmp_path / "cams", max_cases
    )


def test_write_grad_cams_writes_two_panel_pngs_with_safe_names(tmp_path: Path) -> None:
    paths = write(tmp_path, max_cases=3)
    out_dir = tmp_path / "cams"
    assert sorted(out_dir.iterdir()) == sorted(paths)
    assert [path.name for path in paths] == [
        "00_a_b_c_label1_score0.90.png",
        "01____up_label0_score0.10.png",
        "02_x_y_label1_score0.70.png",
    ]
    assert all(path.parent == out_dir and path.is_file() for path in paths)
    for path in paths:
        with Image.open(path) as png:
            pixels = np.asarray(png.convert("RGB")).astype(int)
        assert pixels.shape == (300, 600, 3)
        left, right = pixels[:, :300], pixels[:, 300:]
        coloured = lambda half: (np.abs(half[..., 0] - half[..., 2]) > 30).sum()  # noqa: E731
        assert coloured(left) == 0  # the gray image
        assert coloured(right) > 1000  # the jet overlay


def test_write_grad_cams_writes_at_most_the_cases_there_are(tmp_path: Path) -> None:
    assert len(write(tmp_path, max_cases=10)) == 5
    assert len(list((tmp_path / "cams").iterdir())) == 5


def test_write_grad_cams_with_one_class_takes_the_highest_scores(tmp_path: Path) -> None:
    paths = write(tmp_path, max_cases=2, labels=[1, 1, 1, 1, 1])
    assert [path.name[:2] + path.name[-8:] for path in paths] == ["000.90.png", "010.70.png"]


@pytest.mark.parametrize("max_cases", [0, -1])
def test_write_grad_cams_with_no_cases_writes_nothing(tmp_path: Path, max_cases: int) -> None:
    assert write(tmp_path, max_cases=max_cases) == []
    assert not (tmp_path / "cams").exists()


def test_write_grad_cams_rejects_mismatched_lengths(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="differ in length"):
        write_grad_cams(identity_cnn(), corner_square(2), [0.5], [1, 0], ["a", "b"], tmp_path)
