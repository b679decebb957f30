"""Video classifiers for cine clips (N, C, T, H, W): a 3D ResNet (MONAI), R(2+1)D, and a temporal-shift 2D ResNet (TSM).

* ``resnet3d``: MONAI's ResNet-18 with ``spatial_dims=3`` over (T, H, W).
* ``r2plus1d``: MONAI's ResNet-18 layout whose 3 x 3 x 3 convolutions are each factored into a
  1 x 3 x 3 spatial and a 3 x 1 x 1 temporal convolution with BatchNorm and ReLU between, the
  middle width chosen so that the pair has the parameters of the full 3D kernel (Tran et al.,
  "A closer look at spatiotemporal convolutions", CVPR 2018, eq. 1).
* ``tsm``: MONAI's 2D ResNet-18 applied to every frame, a temporal shift before the first
  convolution of every residual block (residual shift), logits averaged over the frames
  (Lin et al., "TSM: Temporal Shift Module", ICCV 2019): of C channels, the first C/8 take the next
  frame's values, the next C/8 the previous frame's, the rest stay; the clip's ends are zero padded.

Every network maps (N, C, T, H, W) to (N, num_classes) logits.
"""

from __future__ import annotations

import torch
from monai.networks.nets import ResNet, resnet18
from monai.networks.nets.resnet import ResNetBlock
from torch import nn

FOLD_DIV = 8  # TSM shifts 1/8 of the channels each way


def temporal_shift(x: torch.Tensor, frames: int, fold_div: int = FOLD_DIV) -> torch.Tensor:
    """TSM's shift of (N * T, C, H, W) frame features: channels [0, C/8) from frame t + 1, [C/8, 2C/8) from frame t - 1, zeros past the ends."""
    nt, c, h, w = x.shape
    if nt % frames:
        raise ValueError(f"{nt} frame features are not a whole number of {frames}-frame clips")
    x = x.view(nt // frames, frames, c, h, w)
    fold = c // fold_div
    out = torch.zeros_like(x)
    out[:, :-1, :fold] = x[:, 1:, :fold]  # shift left: frame t sees t + 1
    out[:, 1:, fold : 2 * fold] = x[:, :-1, fold : 2 * fold]  # shift right: frame t sees t - 1
    out[:, :, 2 * fold :] = x[:, :, 2 * fold :]
    return out.view(nt, c, h, w)


class ShiftThen(nn.Module):
    """A module whose input is temporally shifted first (the residual shift: only the block's branch sees it)."""

    def __init__(self, inner: nn.Module, frames: int) -> None:
        super().__init__()
        self.inner, self.frames = inner, frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shift, then the wrapped module."""
        return self.inner(temporal_shift(x, self.frames))


class TSMResNet(nn.Module):
    """A 2D ResNet-18 over each frame with a temporal shift in every residual block; logits averaged over the frames."""

    def __init__(self, in_channels: int, num_classes: int, frames: int) -> None:
        super().__init__()
        self.frames = frames
        self.net: ResNet = resnet18(spatial_dims=2, n_input_channels=in_channels, num_classes=num_classes)
        for block in self.net.modules():
            if isinstance(block, ResNetBlock):
                block.conv1 = ShiftThen(block.conv1, frames)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """(N, C, T, H, W) clips to (N, classes) logits."""
        n, c, t, h, w = clips.shape
        if t != self.frames:
            raise ValueError(f"a clip of {t} frames; this network was built for {self.frames}")
        frames = clips.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)
        return self.net(frames).view(n, t, -1).mean(dim=1)


class SpatioTemporal(nn.Module):
    """A 3 x 3 x 3 convolution factored into 1 x 3 x 3 spatial, BatchNorm, ReLU, 3 x 1 x 1 temporal (R(2+1)D)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int = 1) -> None:
        super().__init__()
        middle = (27 * in_planes * out_planes) // (9 * in_planes + 3 * out_planes)  # the full kernel's parameters
        self.spatial = nn.Conv3d(in_planes, middle, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False)
        self.norm, self.act = nn.BatchNorm3d(middle), nn.ReLU(inplace=True)
        self.temporal = nn.Conv3d(middle, out_planes, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Spatial, then temporal."""
        return self.temporal(self.act(self.norm(self.spatial(x))))


def r2plus1d(in_channels: int, num_classes: int) -> ResNet:
    """MONAI's 3D ResNet-18 with every residual block's 3 x 3 x 3 convolutions factored (R(2+1)D-18)."""
    net = resnet18(spatial_dims=3, n_input_channels=in_channels, num_classes=num_classes)
    for block in net.modules():
        if isinstance(block, ResNetBlock):
            conv1, conv2 = block.conv1, block.conv2
            block.conv1 = SpatioTemporal(conv1.in_channels, conv1.out_channels, conv1.stride[-1])
            block.conv2 = SpatioTemporal(conv2.in_channels, conv2.out_channels, conv2.stride[-1])
    return net


def resnet3d(in_channels: int, num_classes: int) -> ResNet:
    """MONAI's ResNet-18 with 3D convolutions over (T, H, W)."""
    return resnet18(spatial_dims=3, n_input_channels=in_channels, num_classes=num_classes)


def build_video_network(name: str, in_channels: int, num_classes: int, frames: int) -> nn.Module:
    """One of ``resnet3d``, ``r2plus1d``, ``tsm`` for clips of ``frames`` frames."""
    if name == "resnet3d":
        return resnet3d(in_channels, num_classes)
    if name == "r2plus1d":
        return r2plus1d(in_channels, num_classes)
    if name == "tsm":
        return TSMResNet(in_channels, num_classes, frames)
    raise ValueError(f"video model '{name}' is not one of resnet3d, r2plus1d, tsm")
