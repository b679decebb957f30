"""2D image classifiers built from MONAI networks."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from monai.networks.nets import DenseNet121, ResNet, resnet18, resnet50, resnet101
from torch import nn


def _small(in_channels: int) -> nn.Module:
    """A four-stage ResNet with one basic block per stage: trains in seconds on a CPU."""
    return ResNet(
        block="basic",
        layers=[1, 1, 1, 1],
        block_inplanes=[16, 32, 64, 128],
        spatial_dims=2,
        n_input_channels=in_channels,
        conv1_t_size=5,
        conv1_t_stride=2,
        num_classes=1,
    )


def _resnet(factory: Callable[..., ResNet]) -> Callable[[int], nn.Module]:
    """Wrap a MONAI ResNet factory as a 2D single-logit classifier builder."""

    def build(in_channels: int) -> nn.Module:
        return factory(spatial_dims=2, n_input_channels=in_channels, num_classes=1)

    return build


CLASSIFIERS: dict[str, Callable[[int], nn.Module]] = {
    "small": _small,
    "resnet18": _resnet(resnet18),
    "resnet50": _resnet(resnet50),
    "resnet101": _resnet(resnet101),
    "densenet121": lambda in_channels: DenseNet121(spatial_dims=2, in_channels=in_channels, out_channels=1),
}


def build_classifier(name: str, in_channels: int = 1, pretrained_weights: str | Path = "") -> nn.Module:
    """Build a named classifier that maps (B, C, H, W) images to (B, 1) logits.

    Args:
        name: one of ``CLASSIFIERS``.
        in_channels: image channels (1 for grayscale ultrasound).
        pretrained_weights: optional local state-dict file, loaded strictly; never downloaded.
    """
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown model '{name}' (known: {', '.join(sorted(CLASSIFIERS))})")
    model = CLASSIFIERS[name](in_channels)
    if pretrained_weights:
        path = Path(pretrained_weights)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights file {path} not found")
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    return model
