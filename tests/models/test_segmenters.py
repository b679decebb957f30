"""Segmenter shapes (2D, small sizes) and the DiceCE loss on known masks."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceCELoss

from models.deeplab import ASPP
from models.segmenters import SEGMENTERS, build_segmenter


@pytest.mark.parametrize("name", sorted(SEGMENTERS))
@pytest.mark.parametrize("shape", [(2, 1, 64, 64), (2, 1, 48, 80)])
def test_every_segmenter_returns_one_logit_map_at_input_size(name: str, shape: tuple[int, ...]) -> None:
    model = build_segmenter(name)
    out = model(torch.randn(*shape))
    assert isinstance(out, torch.Tensor) and out.shape == (shape[0], 1, *shape[2:])  # U-Net++'s list is unwrapped
    out.mean().backward()
    # U-Net++ without deep supervision leaves its three intermediate heads (final_conv_0_1..3) unused.
    unused = {n for n, p in model.named_parameters() if p.grad is None}
    assert unused <= {f"net.final_conv_0_{i}.{w}" for i in (1, 2, 3) for w in ("weight", "bias")}, unused


def test_unknown_segmenter_is_named() -> None:
    with pytest.raises(ValueError, match="unknown segmenter 'segformer'"):
        build_segmenter("segformer")


def test_aspp_keeps_spatial_size_and_uses_atrous_rates() -> None:
    aspp = ASPP(8, 16, rates=(2, 4))
    assert aspp(torch.randn(2, 8, 9, 11)).shape == (2, 16, 9, 11)
    assert [b[0].dilation for b in aspp.branches[1:3]] == [(2, 2), (4, 4)]


def test_dice_ce_on_known_masks_matches_hand_computation() -> None:
    truth = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    logits = torch.tensor([[[[2.0, -1.0], [0.5, -3.0]]]])
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * truth).sum() + 1e-5) / (p.sum() + truth.sum() + 1e-5)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, truth)
    loss = DiceCELoss(sigmoid=True)(logits, truth)
    assert loss.item() == pytest.approx((dice + bce).item(), rel=1e-5)
    perfect = DiceCELoss(sigmoid=True)(torch.where(truth > 0, 20.0, -20.0), truth)
    assert perfect.item() < 1e-4
