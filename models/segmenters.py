"""2D lesion segmenters: MONAI U-Net and U-Net++, and DeepLabV3 / V3+ (``models/deeplab.py``).

Every builder returns a module mapping (B, C, H, W) images to (B, 1, H, W) lesion logits; U-Net++
(which MONAI returns as a list, one map per supervision level) is wrapped to its full-resolution map.
"""

from __future__ import annotations

from typing import Callable

import torch
from monai.networks.nets import BasicUNet, BasicUNetPlusPlus
from torch import nn

from models.deeplab import DeepLab


class FirstOutput(nn.Module):
    """Return the first (full-resolution, deepest-decoder) map of a network that returns a list."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, 1, H, W)."""
        out = self.net(x)
        return out[0] if isinstance(out, (list, tuple)) else out


def _unet(in_channels: int) -> nn.Module:
    # MONAI's BasicUNet ends in a plain 1x1 conv (UNet with residual units adds an activated skip to its
    # output, which bounds the background logits and stalls the cross-entropy term).
    return BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=1, features=(16, 16, 32, 64, 128, 16))


def _unetpp(in_channels: int) -> nn.Module:
    return FirstOutput(BasicUNetPlusPlus(spatial_dims=2, in_channels=in_channels, out_channels=1, features=(16, 16, 32, 64, 128, 16)))


SEGMENTERS: dict[str, Callable[[int], nn.Module]] = {
    "unet": _unet,
    "unetpp": _unetpp,
    "deeplabv3": lambda c: DeepLab(c, 1, widths=(32, 64, 128, 256), aspp_channels=64, rates=(1, 2, 3), plus=False),
    "deeplabv3plus": lambda c: DeepLab(c, 1, widths=(32, 64, 128, 256), aspp_channels=64, rates=(1, 2, 3), plus=True),
}


def build_segmenter(name: str, in_channels: int = 1) -> nn.Module:
    """A named segmenter producing one lesion-logit channel at the input's size."""
    if name not in SEGMENTERS:
        raise ValueError(f"unknown segmenter '{name}' (known: {', '.join(sorted(SEGMENTERS))})")
    return SEGMENTERS[name](in_channels)
