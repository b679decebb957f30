"""PLNet's layout, the ViT wrapper's shapes, and masked patch pooling (mean, gated attention MIL)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.pathology_nets import (
    AttentionMIL,
    MeanPooling,
    PLNet,
    aggregate_patches,
    build_pathology_network,
    pad_patches,
    pathology_vit,
)

SIZE = 32


def _tiny_vit() -> nn.Module:
    """A 32-pixel ViT with 8-pixel patches and 24-wide tokens."""
    return pathology_vit(SIZE, patch_size=8, hidden_size=24, depth=2, heads=2, mlp_dim=48)


def _images() -> torch.Tensor:
    """Two 32-pixel RGB images normalised like the study's (mean 0.5, SD 0.5)."""
    torch.manual_seed(0)
    return (torch.rand(2, 3, SIZE, SIZE) - 0.5) / 0.5


def test_plnet_maps_images_to_logits_and_embeddings() -> None:
    model = PLNet(widths=(4, 8, 16, 32)).eval()
    with torch.no_grad():
        assert tuple(model(_images()).shape) == (2, 1)
        assert tuple(model.features(_images()).shape) == (2, 32)


def test_plnet_has_four_conv_bn_relu_pool_blocks_with_growing_widths() -> None:
    model = PLNet()
    assert len(model.blocks) == 4
    widths = []
    for block in model.blocks:
        conv, norm, act, pool = block
        assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.padding == (1, 1)
        assert isinstance(norm, nn.BatchNorm2d) and norm.num_features == conv.out_channels
        assert isinstance(act, nn.ReLU) and isinstance(pool, nn.MaxPool2d)
        widths.append((conv.in_channels, conv.out_channels))
    assert widths == [(3, 32), (32, 64), (64, 128), (128, 256)]
    assert isinstance(model.pool, nn.AdaptiveAvgPool2d)
    assert model.dropout.p == 0.5 and model.head.in_features == 256


def test_vit_returns_logits_only_and_the_class_token() -> None:
    model = _tiny_vit().eval()
    with torch.no_grad():
        logits = model(_images())
        assert isinstance(logits, torch.Tensor) and tuple(logits.shape) == (2, 1)
        assert tuple(model.features(_images()).shape) == (2, 24)
        assert torch.allclose(logits, model.vit(_images())[0])  # the wrapper is MONAI's forward
        assert tuple(build_pathology_network("vit", SIZE).eval()(_images()).shape) == (2, 1)


@pytest.mark.parametrize("name", ["plnet", "vit"])
def test_gradients_reach_the_first_layer(name: str) -> None:
    model = PLNet(widths=(4, 8, 16, 32)) if name == "plnet" else _tiny_vit()
    model(_images()).sum().backward()
    first = next(model.parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0


def _bag() -> tuple[torch.Tensor, torch.Tensor]:
    """Two cases: three real patches, and one real patch followed by two padded rows."""
    torch.manual_seed(1)
    x = torch.randn(2, 3, 6)
    mask = torch.tensor([[True, True, True], [True, False, False]])
    return x, mask


def test_attention_mil_ignores_padded_rows() -> None:
    pool = AttentionMIL(6).eval()
    x, mask = _bag()
    changed = x.clone()
    changed[1, 1:] = 1e6
    assert torch.allclose(pool(x, mask), pool(changed, mask))
    changed[1, 1:] = float("nan")
    assert torch.allclose(pool(x, mask), pool(changed, mask))


def test_attention_weights_sum_to_one_and_a_lone_patch_gets_all() -> None:
    pool = AttentionMIL(6)
    x, mask = _bag()
    weights = pool.attention(x, mask)
    assert torch.allclose(weights.sum(dim=1), torch.ones(2))
    assert torch.equal(weights[1], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(pool.pool(x, mask)[1], x[1, 0])


def test_mean_pooling_is_the_mean_of_real_patches() -> None:
    x, mask = _bag()
    x[1, 1:] = float("inf")
    out = MeanPooling()(x, mask)
    assert torch.allclose(out[0], (x[0, 0] + x[0, 1] + x[0, 2]) / 3)
    assert torch.allclose(out[1], x[1, 0])


def test_aggregate_patches_pads_a_flat_batch_case_by_case() -> None:
    values = torch.tensor([[1.0], [3.0], [5.0], [10.0]])
    padded, mask = pad_patches(values, [3, 1])
    assert tuple(padded.shape) == (2, 3, 1) and mask.tolist() == [[True, True, True], [True, False, False]]
    assert aggregate_patches(values, [3, 1], MeanPooling()).flatten().tolist() == [3.0, 10.0]
    with pytest.raises(ValueError):
        pad_patches(values, [4, 0])


def test_build_pathology_network_refuses_an_unknown_name() -> None:
    model = build_pathology_network("plnet", SIZE, width=4)
    assert model.blocks[-1][0].out_channels == 32
    with pytest.raises(ValueError, match="plnet, vit"):
        build_pathology_network("resnet", SIZE)
