"""Video classifiers for cine clips (N, C, T, H, W): a 3D ResNet (MONAI), R(2+1)D, and temporal-shift (TSM) and temporal-interlace (TIN) 2D ResNets.

* ``resnet3d``: MONAI's ResNet-18 with ``spatial_dims=3`` over (T, H, W).
* ``r2plus1d``: MONAI's ResNet-18 layout whose 3 x 3 x 3 convolutions are each factored into a
  1 x 3 x 3 spatial and a 3 x 1 x 1 temporal convolution with BatchNorm and ReLU between, the
  middle width chosen so that the pair has the parameters of the full 3D kernel (Tran et al.,
  "A closer look at spatiotemporal convolutions", CVPR 2018, eq. 1).
* ``tsm``: MONAI's 2D ResNet-18 applied to every frame, a temporal shift before the first
  convolution of every residual block (residual shift), logits averaged over the frames
  (Lin et al., "TSM: Temporal Shift Module", ICCV 2019): of C channels, the first C/8 take the next
  frame's values, the next C/8 the previous frame's, the rest stay; the clip's ends are zero padded.
* ``tin``: the same 2D ResNet-18 with a temporal interlace before the first convolution of every
  residual block (Shao, Qian, Liu, "Temporal Interlacing Network", AAAI 2020): a quarter of the
  channels, in four groups, are moved along time by learned fractional offsets (two per clip, the
  second half of the groups taking them with the opposite sign) with linear interpolation and zero
  padding, then scaled by a learned weight per frame and group.

Every network maps (N, C, T, H, W) to (N, num_classes) logits. ``width`` sets the planes of the
four ResNet stages to (width, 2 width, 4 width, 8 width); 64 is the standard ResNet-18.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from monai.networks.nets import ResNet
from monai.networks.nets.resnet import ResNetBlock
from torch import nn

FOLD_DIV = 8  # TSM shifts 1/8 of the channels each way
WIDTH = 64  # the standard ResNet-18's first stage
INTERLACE_DIV = 4  # TIN interlaces 1/4 of the channels
OFFSET_GROUPS = 2  # offsets learned per clip; each used with both signs, so the interlaced channels form 4 groups
OFFSET_RANGE = 2.0  # learned offsets lie in (-2, 2) frames (the reference's 4 * (sigmoid - 1/2))
OFFSET_START = 0.5  # the offset net's bias starts the offsets at half a frame (the reference's bias 0.5108)
VIDEO_NETWORKS = ("resnet3d", "r2plus1d", "tsm", "tin")


def resnet18_of_width(spatial_dims: int, in_channels: int, num_classes: int, width: int = WIDTH) -> ResNet:
    """MONAI's ResNet-18 (basic blocks, 2-2-2-2) with stage planes (width, 2 width, 4 width, 8 width) and MONAI's default first convolution."""
    if width < 1:
        raise ValueError(f"a width of {width}; it must be at least 1")
    planes = [width, 2 * width, 4 * width, 8 * width]
    return ResNet(ResNetBlock, [2, 2, 2, 2], planes, spatial_dims=spatial_dims, n_input_channels=in_channels, num_classes=num_classes)


def temporal_shift(x: torch.Tensor, frames: int, fold_div: int = FOLD_DIV) -> torch.Tensor:
    """TSM's shift of (N * T, C, H, W) frame features: channels [0, C/8) from frame t + 1, [C/8, 2C/8) from frame t - 1, zeros past the ends."""
    n, c, h, w = _clip_shape(x, frames)
    x = x.view(n, frames, c, h, w)
    fold = c // fold_div
    out = torch.zeros_like(x)
    out[:, :-1, :fold] = x[:, 1:, :fold]  # shift left: frame t sees t + 1
    out[:, 1:, fold : 2 * fold] = x[:, :-1, fold : 2 * fold]  # shift right: frame t sees t - 1
    out[:, :, 2 * fold :] = x[:, :, 2 * fold :]
    return out.view(n * frames, c, h, w)


def _clip_shape(x: torch.Tensor, frames: int) -> tuple[int, int, int, int]:
    """(clips, C, H, W) of (N * T, C, H, W) frame features, or a ValueError when N * T is not whole clips."""
    nt, c, h, w = x.shape
    if nt % frames:
        raise ValueError(f"{nt} frame features are not a whole number of {frames}-frame clips")
    return nt // frames, c, h, w


class TemporalShift(nn.Module):
    """TSM's fixed shift of (N * T, C, H, W) frame features, as a module."""

    def __init__(self, frames: int) -> None:
        super().__init__()
        self.frames = frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shift 1/8 of the channels each way."""
        return temporal_shift(x, self.frames)


def shift_frames(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Move (N, T, G, D) features by whole per-(N, G) frame ``shifts``: frame t takes frame t - shift, zeros outside the clip."""
    n, t, g, d = x.shape
    source = torch.arange(t, device=x.device)[None, :, None] - shifts[:, None, :]  # (N, T, G)
    inside = ((source >= 0) & (source < t)).to(x.dtype)
    index = source.clamp(0, t - 1)[..., None].expand(n, t, g, d)
    return torch.gather(x, 1, index) * inside[..., None]


def linear_temporal_sample(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Move (N, T, G, ...) features by fractional per-(N, G) ``offsets``: for offset k + f, frame t gets (1 - f) x[t - k] + f x[t - k - 1], zeros outside the clip."""
    n, t, g = x.shape[:3]
    flat = x.reshape(n, t, g, -1)
    whole = torch.floor(offsets)
    frac = (offsets - whole)[:, None, :, None]  # the offsets' gradient flows through the interpolation weights
    steps = whole.long()
    out = (1 - frac) * shift_frames(flat, steps) + frac * shift_frames(flat, steps + 1)
    return out.reshape(x.shape)


class OffsetNet(nn.Module):
    """TIN's offsets of a clip from (N, C, T) pooled features: a temporal convolution to one channel, FC, ReLU, FC, scaled sigmoid in (-2, 2)."""

    def __init__(self, channels: int, frames: int, groups: int = OFFSET_GROUPS) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, 1, 3, padding=1)
        self.fc1, self.act, self.fc2 = nn.Linear(frames, frames), nn.ReLU(), nn.Linear(frames, groups)
        nn.init.constant_(self.fc2.bias, math.log((0.5 + OFFSET_START / (2 * OFFSET_RANGE)) / (0.5 - OFFSET_START / (2 * OFFSET_RANGE))))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """(N, C, T) to (N, groups) offsets in frames."""
        logits = self.fc2(self.act(self.fc1(self.conv(pooled).squeeze(1))))
        return 2 * OFFSET_RANGE * (torch.sigmoid(logits) - 0.5)


class WeightNet(nn.Module):
    """TIN's weights from (N, C, T) pooled features: a temporal convolution to one channel per group, 2 sigmoid in (0, 2), 1 at a zero bias."""

    def __init__(self, channels: int, groups: int = OFFSET_GROUPS) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, groups, 3, padding=1)
        nn.init.zeros_(self.conv.bias)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """(N, C, T) to (N, T, groups) weights."""
        return 2 * torch.sigmoid(self.conv(pooled)).transpose(1, 2)


def interlaced_channels(channels: int, div: int = INTERLACE_DIV) -> int:
    """How many of ``channels`` TIN interlaces: channels / div rounded down to whole groups, at least one channel per group."""
    groups = 2 * OFFSET_GROUPS
    if channels < groups:
        raise ValueError(f"{channels} channels cannot form {groups} interlace groups")
    return max(groups, channels // div // groups * groups)


class TemporalInterlace(nn.Module):
    """TIN's interlace of (N * T, C, H, W) frame features: the first channels in 4 groups moved by +offsets, -offsets, weighted per frame."""

    def __init__(self, channels: int, frames: int, div: int = INTERLACE_DIV) -> None:
        super().__init__()
        self.frames, self.fold = frames, interlaced_channels(channels, div)
        self.offset_net = OffsetNet(self.fold, frames)
        self.weight_net = WeightNet(self.fold)

    def interlaced_offsets(self, pooled: torch.Tensor) -> torch.Tensor:
        """(N, 4) offsets of the groups: the offset net's two, then the same two with the opposite sign."""
        offsets = self.offset_net(pooled)
        return torch.cat([offsets, -offsets], dim=1)

    def group_weights(self, pooled: torch.Tensor) -> torch.Tensor:
        """(N, T, 4) weights of the groups: the weight net's two, repeated for the opposite-signed half."""
        return self.weight_net(pooled).repeat(1, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Interlace the first channels, keep the rest."""
        n, c, h, w = _clip_shape(x, self.frames)
        clips = x.view(n, self.frames, c, h, w)
        part = clips[:, :, : self.fold]
        pooled = part.mean(dim=(3, 4)).transpose(1, 2)  # (N, fold, T): only time and channels inform the offsets
        groups = part.reshape(n, self.frames, 2 * OFFSET_GROUPS, -1, h, w)
        moved = linear_temporal_sample(groups, self.interlaced_offsets(pooled))
        moved = moved * self.group_weights(pooled)[..., None, None, None]
        out = torch.cat([moved.reshape_as(part).to(x.dtype), clips[:, :, self.fold :]], dim=2)
        return out.view(n * self.frames, c, h, w)


class FrameResNet(nn.Module):
    """A 2D ResNet-18 over each frame with a temporal module before every residual block's first convolution; logits averaged over the frames."""

    def __init__(self, in_channels: int, num_classes: int, frames: int, temporal: Callable[[int], nn.Module], width: int = WIDTH) -> None:
        super().__init__()
        self.frames = frames
        self.net = resnet18_of_width(2, in_channels, num_classes, width)
        for block in self.net.modules():
            if isinstance(block, ResNetBlock):
                block.conv1 = nn.Sequential(temporal(block.conv1.in_channels), block.conv1)  # residual: only the branch sees it

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """(N, C, T, H, W) clips to (N, classes) logits."""
        n, c, t, h, w = clips.shape
        if t != self.frames:
            raise ValueError(f"a clip of {t} frames; this network was built for {self.frames}")
        frames = clips.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)
        return self.net(frames).view(n, t, -1).mean(dim=1)


def tsm(in_channels: int, num_classes: int, frames: int, width: int = WIDTH) -> FrameResNet:
    """A 2D ResNet-18 with TSM's residual temporal shift in every block."""
    return FrameResNet(in_channels, num_classes, frames, lambda channels: TemporalShift(frames), width)


def tin(in_channels: int, num_classes: int, frames: int, width: int = WIDTH) -> FrameResNet:
    """A 2D ResNet-18 with TIN's residual temporal interlace in every block."""
    return FrameResNet(in_channels, num_classes, frames, lambda channels: TemporalInterlace(channels, frames), width)


class SpatioTemporal(nn.Module):
    """A 3 x 3 x 3 convolution factored into 1 x 3 x 3 spatial, BatchNorm, ReLU, 3 x 1 x 1 temporal (R(2+1)D)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int = 1) -> None:
        super().__init__()
        middle = max(1, (27 * in_planes * out_planes) // (9 * in_planes + 3 * out_planes))  # the full kernel's parameters
        self.spatial = nn.Conv3d(in_planes, middle, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False)
        self.norm, self.act = nn.BatchNorm3d(middle), nn.ReLU(inplace=True)
        self.temporal = nn.Conv3d(middle, out_planes, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Spatial, then temporal."""
        return self.temporal(self.act(self.norm(self.spatial(x))))


def r2plus1d(in_channels: int, num_classes: int, width: int = WIDTH) -> ResNet:
    """MONAI's 3D ResNet-18 with every residual block's 3 x 3 x 3 convolutions factored (R(2+1)D-18)."""
    net = resnet18_of_width(3, in_channels, num_classes, width)
    for block in net.modules():
        if isinstance(block, ResNetBlock):
            conv1, conv2 = block.conv1, block.conv2
            block.conv1 = SpatioTemporal(conv1.in_channels, conv1.out_channels, conv1.stride[-1])
            block.conv2 = SpatioTemporal(conv2.in_channels, conv2.out_channels, conv2.stride[-1])
    return net


def resnet3d(in_channels: int, num_classes: int, width: int = WIDTH) -> ResNet:
    """MONAI's ResNet-18 with 3D convolutions over (T, H, W)."""
    return resnet18_of_width(3, in_channels, num_classes, width)


def build_video_network(name: str, in_channels: int, num_classes: int, frames: int, width: int = WIDTH) -> nn.Module:
    """One of ``resnet3d``, ``r2plus1d``, ``tsm``, ``tin`` for clips of ``frames`` frames, stages of ``width``, 2, 4, 8 ``width`` planes."""
    if name == "resnet3d":
        return resnet3d(in_channels, num_classes, width)
    if name == "r2plus1d":
        return r2plus1d(in_channels, num_classes, width)
    if name == "tsm":
        return tsm(in_channels, num_classes, frames, width)
    if name == "tin":
        return tin(in_channels, num_classes, frames, width)
    raise ValueError(f"video model '{name}' is not one of {', '.join(VIDEO_NETWORKS)}")
