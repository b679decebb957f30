"""Video networks: shapes and gradients on tiny clips, width, TSM's shift and TIN's interlace against hand-computed tensors, R(2+1)D's factored kernels."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import resnet18
from torch import nn

from models.video_nets import (
    OFFSET_RANGE,
    VIDEO_NETWORKS,
    OffsetNet,
    SpatioTemporal,
    TemporalInterlace,
    WeightNet,
    build_video_network,
    interlaced_channels,
    linear_temporal_sample,
    temporal_shift,
)


def parameters(net: nn.Module) -> int:
    """How many parameters ``net`` has."""
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("name", VIDEO_NETWORKS)
def test_each_network_maps_tiny_clips_to_one_logit_per_clip(name: str) -> None:
    torch.manual_seed(0)
    net = build_video_network(name, in_channels=1, num_classes=1, frames=4).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 1, 4, 32, 32))  # N, C, T = 4, 32 x 32
    assert out.shape == (2, 1) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", VIDEO_NETWORKS)
def test_each_network_at_width_8_trains_on_tiny_clips(name: str) -> None:
    torch.manual_seed(0)
    net = build_video_network(name, in_channels=1, num_classes=1, frames=4, width=8).train()
    out = net(torch.randn(2, 1, 4, 32, 32))
    out.sum().backward()
    assert out.shape == (2, 1) and torch.isfinite(out).all()
    grads = {key: p.grad for key, p in net.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert any(g.abs().sum() > 0 for key, g in grads.items() if "offset_net" in key) == (name == "tin")  # TIN learns its offsets


@pytest.mark.parametrize("name", VIDEO_NETWORKS)
def test_the_width_sets_the_stage_planes_and_scales_the_parameters_about_quadratically(name: str) -> None:
    narrow, wide = (build_video_network(name, 1, 1, frames=4, width=w) for w in (8, 16))
    inner = getattr(wide, "net", wide)
    assert [stage[0].bn2.num_features for stage in (inner.layer1, inner.layer2, inner.layer3, inner.layer4)] == [16, 32, 64, 128]
    assert 3.9 < parameters(wide) / parameters(narrow) < 4.0  # convolutions grow as width^2, BatchNorm and biases as width


@pytest.mark.parametrize(("name", "spatial_dims"), [("resnet3d", 3), ("tsm", 2)])
def test_the_default_width_is_monais_standard_resnet18(name: str, spatial_dims: int) -> None:
    standard = resnet18(spatial_dims=spatial_dims, n_input_channels=1, num_classes=1)
    assert parameters(build_video_network(name, 1, 1, frames=4)) == parameters(standard)
    with pytest.raises(ValueError, match="a width of 0"):
        build_video_network(name, 1, 1, frames=4, width=0)


def test_an_unknown_network_is_refused_with_every_name() -> None:
    with pytest.raises(ValueError, match="is not one of resnet3d, r2plus1d, tsm, tin"):
        build_video_network("slowfast", 1, 1, frames=4)


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


@pytest.mark.parametrize("name", ["tsm", "tin"])
def test_a_frame_network_mixes_frames_and_only_frames_of_the_same_clip(name: str) -> None:
    torch.manual_seed(0)
    net = build_video_network(name, 1, 1, frames=4).eval()
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


def test_the_linear_temporal_sampler_moves_each_group_by_a_fractional_offset_with_zeros_past_the_ends() -> None:
    ramp = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1, 1, 1).repeat(1, 1, 3, 2, 1, 1)  # (N, T, G, C/G, H, W)
    offsets = torch.tensor([[0.5, -1.0, 1.5]], requires_grad=True)
    out = linear_temporal_sample(ramp, offsets)
    expected = torch.tensor([
        [0.5, 2.0, 0.0],  # frame 0: 0.5 (x0 + zero); x1; both sources before the clip
        [1.5, 3.0, 0.5],  # frame 1: 0.5 (x1 + x0); x2; 0.5 (x0 + zero)
        [2.5, 4.0, 1.5],  # frame 2: 0.5 (x2 + x1); x3; 0.5 (x1 + x0)
        [3.5, 0.0, 2.5],  # frame 3: 0.5 (x3 + x2); past the clip; 0.5 (x2 + x1)
    ])  # fmt: skip
    assert out.shape == ramp.shape
    torch.testing.assert_close(out[0, :, :, 0, 0, 0], expected)
    torch.testing.assert_close(out[0, :, :, 1, 0, 0], expected)
    out[0, :, 0, 0, 0, 0].sum().backward()  # d/df of sum_t (1 - f) x[t] + f x[t - 1] = (0 - 1) + (1 - 2) + (2 - 3) + (3 - 4)
    torch.testing.assert_close(offsets.grad, torch.tensor([[-4.0, 0.0, 0.0]]))


def test_the_interlace_moves_the_two_halves_of_its_groups_by_opposite_offsets_and_weights_them(monkeypatch: pytest.MonkeyPatch) -> None:
    frames, channels = 4, 16
    module = TemporalInterlace(channels, frames)
    assert module.fold == 4  # a quarter of 16 channels: 4 groups of one channel
    monkeypatch.setattr(module.offset_net, "forward", lambda pooled: torch.tensor([[0.5, 1.0]]))
    monkeypatch.setattr(module.weight_net, "forward", lambda pooled: torch.tensor([[2.0, 0.5]]).expand(1, frames, 2))
    ramp = torch.arange(1.0, frames + 1).view(frames, 1, 1, 1).repeat(1, channels, 1, 1)  # (T, C, 1, 1): frame t holds t + 1
    out = module(ramp).view(frames, channels)
    expected = torch.tensor([
        [0.5, 1.5, 2.5, 3.5],  # group 0: +0.5, weight 2 -> 1, 3, 5, 7
        [0.0, 1.0, 2.0, 3.0],  # group 1: +1.0, weight 0.5 -> 0, 0.5, 1, 1.5
        [1.5, 2.5, 3.5, 2.0],  # group 2: -0.5 (frame 3 half from past the clip), weight 2 -> 3, 5, 7, 4
        [2.0, 3.0, 4.0, 0.0],  # group 3: -1.0, weight 0.5 -> 1, 1.5, 2, 0
    ]).T * torch.tensor([2.0, 0.5, 2.0, 0.5])  # fmt: skip
    torch.testing.assert_close(out[:, :4], expected)
    torch.testing.assert_close(out[:, 4:], ramp.view(frames, channels)[:, 4:])  # the other three quarters stay


def test_small_widths_still_interlace_one_channel_per_group() -> None:
    assert [interlaced_channels(c) for c in (4, 8, 16, 64, 256)] == [4, 4, 4, 16, 64]
    with pytest.raises(ValueError, match="3 channels cannot form 4 interlace groups"):
        interlaced_channels(3)


def test_offsets_stay_in_range_and_start_at_half_a_frame_with_unit_weights() -> None:
    torch.manual_seed(0)
    offset_net, weight_net = OffsetNet(channels=4, frames=8), WeightNet(channels=4)
    extreme = offset_net(1e4 * torch.randn(256, 4, 8))
    assert extreme.shape == (256, 2) and extreme.abs().max() <= OFFSET_RANGE and extreme.abs().max() > 0.9 * OFFSET_RANGE
    weights = weight_net(1e4 * torch.randn(256, 4, 8))
    assert weights.shape == (256, 8, 2) and weights.min() >= 0 and weights.max() <= 2
    with torch.no_grad():
        for layer in (offset_net.conv, offset_net.fc1, offset_net.fc2, weight_net.conv):
            layer.weight.zero_()  # what the initial biases give alone
    pooled = torch.randn(3, 4, 8)
    torch.testing.assert_close(offset_net(pooled), torch.full((3, 2), 0.5), atol=1e-4, rtol=0)
    torch.testing.assert_close(weight_net(pooled), torch.ones(3, 8, 2))


def test_r2plus1d_factors_each_kernel_with_the_parameters_of_the_full_one() -> None:
    conv = SpatioTemporal(64, 64)
    full = 27 * 64 * 64
    factored = sum(p.numel() for name, p in conv.named_parameters() if "norm" not in name)
    assert conv.spatial.kernel_size == (1, 3, 3) and conv.temporal.kernel_size == (3, 1, 1)
    assert conv.spatial.out_channels == 144 and abs(factored - full) / full < 0.01  # M = 27*64*64 / (9*64 + 3*64) = 144
    assert SpatioTemporal(8, 8).spatial.out_channels == 18 and SpatioTemporal(1, 1).spatial.out_channels == 2  # 27*8*8 / 96; 27 / 12
