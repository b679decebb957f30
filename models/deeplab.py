"""DeepLabV3 and DeepLabV3+ (2D) on a MONAI ResNet encoder; MONAI has no DeepLab.

DeepLabV3 (Chen et al., 2017): atrous spatial pyramid pooling (ASPP) over the encoder's last
feature map, then bilinear upsampling. DeepLabV3+ (Chen et al., 2018) adds a decoder that
fuses the upsampled ASPP output with the encoder's stride-4 features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.nets import ResNet
from torch import nn


def _conv_bn_relu(cin: int, cout: int, kernel: int = 1, dilation: int = 1) -> nn.Sequential:
    padding = 0 if kernel == 1 else dilation
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=padding, dilation=dilation, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ASPPPooling(nn.Module):
    """The image-level branch: global average pooling, 1x1 conv, upsampled back."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, cin, H, W) -> (B, cout, H, W)."""
        return F.interpolate(self.conv(self.pool(x)), size=x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Parallel 1x1 and 3x3 atrous convolutions at ``rates`` plus image pooling, fused by a 1x1 conv."""

    def __init__(self, cin: int, cout: int = 256, rates: tuple[int, ...] = (6, 12, 18), dropout: float = 0.1) -> None:
        super().__init__()
        branches = [_conv_bn_relu(cin, cout)] + [_conv_bn_relu(cin, cout, 3, r) for r in rates] + [ASPPPooling(cin, cout)]
        self.branches = nn.ModuleList(branches)
        self.project = nn.Sequential(_conv_bn_relu(cout * len(branches), cout), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, cin, H, W) -> (B, cout, H, W)."""
        return self.project(torch.cat([branch(x) for branch in self.branches], dim=1))


def _dilate(stage: nn.Module, dilation: int) -> None:
    """Replace a ResNet stage's stride 2 by atrous 3x3 convolutions of ``dilation`` (same weights' shapes)."""
    for module in stage.modules():
        if isinstance(module, nn.Conv2d):
            module.stride = (1, 1)
            if module.kernel_size == (3, 3):
                module.dilation, module.padding = (dilation, dilation), (dilation, dilation)


class DeepLab(nn.Module):
    """DeepLabV3 (``plus=False``) or DeepLabV3+ (``plus=True``) returning per-pixel logits at input size."""

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        layers: tuple[int, int, int, int] = (2, 2, 2, 2),
        widths: tuple[int, int, int, int] = (64, 128, 256, 512),
        aspp_channels: int = 256,
        rates: tuple[int, ...] = (6, 12, 18),
        plus: bool = True,
    ) -> None:
        super().__init__()
        self.encoder = ResNet(
            block="basic", layers=list(layers), block_inplanes=list(widths), spatial_dims=2,
            n_input_channels=in_channels, conv1_t_size=7, conv1_t_stride=2, feed_forward=False,
        )  # fmt: skip
        # Output stride 8, as DeepLab: the last two stages keep their resolution and dilate instead.
        _dilate(self.encoder.layer3, 2)
        _dilate(self.encoder.layer4, 4)
        self.aspp = ASPP(widths[3], aspp_channels, rates)
        self.plus = plus
        if plus:
            self.low_level = _conv_bn_relu(widths[0], 48)
            self.decoder = nn.Sequential(_conv_bn_relu(aspp_channels + 48, aspp_channels, 3), _conv_bn_relu(aspp_channels, aspp_channels, 3))
        self.head = nn.Conv2d(aspp_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, out_channels, H, W) logits."""
        size = x.shape[-2:]
        e = self.encoder
        stem = e.maxpool(e.act(e.bn1(e.conv1(x))))  # stride 4
        low = e.layer1(stem)
        high = e.layer4(e.layer3(e.layer2(low)))  # stride 8 (dilated layer3 and layer4)
        y = self.aspp(high)
        if self.plus:
            y = F.interpolate(y, size=low.shape[-2:], mode="bilinear", align_corners=False)
            y = self.decoder(torch.cat([y, self.low_level(low)], dim=1))
        return F.interpolate(self.head(y), size=size, mode="bilinear", align_corners=False)
