"""Fusion blocks: shapes and gradients, absent modalities ignored, the multilayer block against a hand computation, voting as the mean logit."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from models.fusion_blocks import (
    FUSION_BLOCKS,
    AttentionFusion,
    MultilayerFusion,
    SqueezeExcitation,
    VotingFusion,
    WeightedFusion,
    build_fusion,
)

N = 4
MASK = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 1], [1, 1, 0]], dtype=torch.bool)  # every modality present in 3 rows


def features(dims: list[int], seed: int = 0) -> list[torch.Tensor]:
    """Random (N, D_m) features for each width in ``dims``."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(N, d, generator=gen) for d in dims]


@pytest.mark.parametrize("name", FUSION_BLOCKS)
@pytest.mark.parametrize("dims", [[3, 5], [3, 5, 2]])
def test_each_block_gives_one_logit_per_case_and_trains_every_parameter(name: str, dims: list[int]) -> None:
    """(N, 1) logits for 2 and 3 modalities of different widths; a loss reaches every parameter."""
    torch.manual_seed(0)
    block = build_fusion(name, dims).train()
    out = block(features(dims))
    assert out.shape == (N, 1)
    (out * torch.randn(N, 1)).sum().backward()
    for pname, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", FUSION_BLOCKS)
@pytest.mark.parametrize("train", [False, True])
def test_an_absent_modality_s_features_change_no_output(name: str, train: bool) -> None:
    """Replacing the absent entries (even by NaN or huge values) leaves every case's logit unchanged; a present entry does change it."""
    torch.manual_seed(0)
    block = build_fusion(name, [3, 5, 2]).train(train)
    if not train:
        block.train()(features([3, 5, 2], seed=1))  # non-trivial running statistics
        block.eval()
    base = features([3, 5, 2])
    changed = [x.clone() for x in base]
    for m, x in enumerate(changed):
        x[~MASK[:, m]] = torch.randn_like(x[~MASK[:, m]]) * 100
    changed[0][2, 0] = float("nan")
    with torch.no_grad():
        expected = copy.deepcopy(block)(base, MASK)
        torch.testing.assert_close(copy.deepcopy(block)(changed, MASK), expected)
        changed[1][0] += 1.0  # present in case 0
        assert not torch.allclose(copy.deepcopy(block)(changed, MASK)[0], expected[0])


@pytest.mark.parametrize("block", [WeightedFusion([3, 5], width=4), AttentionFusion([3, 5], width=4)])
def test_weights_are_renormalised_over_the_present_modalities(block: nn.Module) -> None:
    """With one modality present, weighted and attention fusion give the head of that modality's projection."""
    x = features([3, 5])
    present = torch.tensor([[True, False]] * N)
    with torch.no_grad():
        torch.testing.assert_close(block(x, present), block.head(block.projections[0](x[0])))


def test_voting_is_the_mean_of_the_present_modalities_logits() -> None:
    """Soft voting in logit space: the mean of each present modality's head logit."""
    torch.manual_seed(0)
    dims = [3, 5, 2]
    block = VotingFusion(dims)
    x = features(dims)
    with torch.no_grad():
        heads = torch.cat([h(v) for h, v in zip(block.heads, x)], dim=1)
        torch.testing.assert_close(block(x), heads.mean(1, keepdim=True))
        expected = torch.stack([heads[i][MASK[i]].mean() for i in range(N)])[:, None]
        torch.testing.assert_close(block(x, MASK), expected)


def test_multilayer_children_follow_the_paper() -> None:
    """BN per modality, Linear(256), ReLU, BN(256), SE (256 -> 16 -> 256, sigmoid), Linear(1); no dropout."""
    block = MultilayerFusion([3, 5])
    assert [type(c) for c in block.children()] == [nn.ModuleList, nn.Linear, nn.ReLU, nn.BatchNorm1d, SqueezeExcitation, nn.Linear]
    assert [(type(n), n.num_features) for n in block.norms] == [(nn.BatchNorm1d, 3), (nn.BatchNorm1d, 5)]
    assert (block.dense.in_features, block.dense.out_features, block.norm.num_features) == (8, 256, 256)
    assert [type(c) for c in block.se.children()] == [nn.Linear, nn.ReLU, nn.Linear, nn.Sigmoid]
    assert (block.se.fc1.in_features, block.se.fc1.out_features, block.se.fc2.out_features) == (256, 16, 256)
    assert (block.head.in_features, block.head.out_features) == (256, 1)
    assert not any(isinstance(m, nn.Dropout) for m in block.modules())


def fill(t: torch.Tensor, start: float, step: float) -> None:
    """Fill ``t`` in place with start, start + step, ... in row-major order."""
    t.copy_(start + step * torch.arange(t.numel(), dtype=t.dtype).reshape(t.shape))


def test_multilayer_matches_a_hand_computation() -> None:
    """Eval mode, fixed weights and running statistics: normalise, zero absent, concat, linear, ReLU, BN, SE gate, head."""
    block = MultilayerFusion([2, 3], hidden=4, reduction=2).eval()
    with torch.no_grad():
        for k, norm in enumerate(block.norms):
            fill(norm.running_mean, 0.1 * k, 0.2)
            fill(norm.running_var, 0.5, 0.25)
            fill(norm.weight, 1.0, -0.1)
            fill(norm.bias, -0.2, 0.1)
        fill(block.dense.weight, -0.5, 0.05)
        fill(block.dense.bias, 0.1, -0.05)
        fill(block.norm.running_mean, 0.0, 0.1)
        fill(block.norm.running_var, 1.0, 0.5)
        fill(block.norm.weight, 0.8, 0.1)
        fill(block.norm.bias, 0.05, 0.05)
        fill(block.se.fc1.weight, -0.3, 0.1)
        fill(block.se.fc1.bias, 0.2, -0.1)
        fill(block.se.fc2.weight, 0.4, -0.15)
        fill(block.se.fc2.bias, -0.1, 0.05)
        fill(block.head.weight, 0.3, -0.2)
        fill(block.head.bias, 0.7, 0.0)
    x = [torch.tensor([[1.0, -2.0], [0.5, 0.0], [3.0, 1.0], [-1.0, 2.0]]), torch.tensor([[0.0, 1.0, 2.0], [-1.0, 0.5, 1.5], [2.0, -3.0, 0.0], [1.0, 1.0, -1.0]])]
    present = torch.tensor([[True, True], [True, False], [False, True], [True, True]])
    eps = 1e-5
    normed = []
    for k, (v, norm) in enumerate(zip(x, block.norms)):
        z = (v - norm.running_mean) / torch.sqrt(norm.running_var + eps) * norm.weight + norm.bias
        normed.append(z * present[:, k : k + 1].float())
    h = torch.cat(normed, dim=1) @ block.dense.weight.T + block.dense.bias
    h = torch.clamp(h, min=0.0)
    h = (h - block.norm.running_mean) / torch.sqrt(block.norm.running_var + eps) * block.norm.weight + block.norm.bias
    squeeze = torch.clamp(h @ block.se.fc1.weight.T + block.se.fc1.bias, min=0.0)
    gate = 1.0 / (1.0 + torch.exp(-(squeeze @ block.se.fc2.weight.T + block.se.fc2.bias)))
    expected = (h * gate) @ block.head.weight.T + block.head.bias
    with torch.no_grad():
        torch.testing.assert_close(block(x, present), expected)
        torch.testing.assert_close(block(x)[[0, 3]], expected[[0, 3]])


def test_unknown_names_and_bad_masks_are_refused() -> None:
    """An unknown fusion lists the known ones; a case with no present modality or a mis-shaped mask is refused."""
    with pytest.raises(ValueError, match="concat, weighted, attention, voting, multilayer"):
        build_fusion("late", [3, 5])
    block = build_fusion("concat", [3, 5])
    with pytest.raises(ValueError, match="at least one present"):
        block(features([3, 5]), torch.tensor([[True, True], [False, False], [True, True], [True, True]]))
    with pytest.raises(ValueError, match="bool"):
        block(features([3, 5]), torch.ones(N, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="expected"):
        block(features([3, 4]))
