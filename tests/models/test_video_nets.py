"""Video networks: output shapes on tiny clips, TSM's shift against a hand-computed tensor, R(2+1)D's factored kernels."""

from __future__ import annotations

import pytest
import torch

from models.video_nets import SpatioTemporal, build_video_network, temporal_shift


@pytest.mark.parametrize("name", ["resnet3d", "r2plus1d", "tsm"])
def test_each_network_maps_tiny_clips_to_one_logit_per_clip(name: str) -> None:
    torch.manual_seed(0)
    net = build_video_network(name, in_channels=1, num_classes=1, frames=4).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 1, 4, 32, 32))  # N, C, T = 4, 32 x 32
    assert out.shape == (2, 1) and torch.isfinite(out).all()


def test_the_temporal_shift_moves_an_eighth_of_the_channels_each_way_with_zeros_at_the_ends() -> None:
    t, c = 3, 8
    x = torch.tensor([[10.0 * frame + channel for channel in range(c)] for frame in range(t)]).view(t, c, 1, 1)
    out = temporal_shift(x, frames=t).view(t, c)
    expected = torch.tensor([
        [10, 0, 2, 3, 4, 5, 6, 7],  # frame 0: channel 0 from frame 1, channel 1 from before the clip (0)
        [20, 1, 12, 13, 14, 15, 16, 17],  # frame 1: channel 0 from frame 2, channel 1 from frame 0
        [0, 11, 22, 23, 24, 25, 26, 27],  # frame 2: channel 0 from past the clip (0), channel 1 from frame 1
    ], dtype=torch.float32)  # fmt: skip
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="not a whole number of 4-frame clips"):
        temporal_shift(torch.zeros(6, 8, 1, 1), frames=4)


def test_a_tsm_network_shifts_across_frames_and_only_across_frames() -> None:
    torch.manual_seed(0)
    net = build_video_network("tsm", 1, 1, frames=4).eval()
    clips = torch.randn(2, 1, 4, 32, 32)
    with torch.no_grad():
        base = net(clips)
        changed = clips.clone()
        changed[0, :, 3] = 0.0  # another last frame in clip 0 only
        out = net(changed)
        reordered = net(clips[:, :, [1, 0, 2, 3]])
    assert not torch.allclose(out[0], base[0]) and torch.allclose(out[1], base[1])  # clips never mix
    assert not torch.allclose(reordered, base)  # frame order matters: not a bag of frames
    with pytest.raises(ValueError, match="a clip of 3 frames; this network was built for 4"):
        net(torch.randn(1, 1, 3, 32, 32))


def test_r2plus1d_factors_each_kernel_with_the_parameters_of_the_full_one() -> None:
    conv = SpatioTemporal(64, 64)
    full = 27 * 64 * 64
    factored = sum(p.numel() for name, p in conv.named_parameters() if "norm" not in name)
    assert conv.spatial.kernel_size == (1, 3, 3) and conv.temporal.kernel_size == (3, 1, 1)
    assert conv.spatial.out_channels == 144 and abs(factored - full) / full < 0.01  # M = 27*64*64 / (9*64 + 3*64) = 144
