"""Two-view mammography network: shapes, shared versus separate branches, which view goes where, gradients."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import resnet18
from torch import nn

from models.mammo_nets import BRANCH_MODES, TwoViewNet, build_two_view_network

N, S, WIDTH = 2, 32, 4
FEATURES = 8 * WIDTH


def parameters(net: nn.Module) -> int:
    """How many parameters ``net`` has (shared ones once)."""
    return sum(p.numel() for p in net.parameters())


def views(seed: int = 0) -> torch.Tensor:
    """(N, 2, 1, S, S) random CC and MLO views."""
    return torch.randn(N, 2, 1, S, S, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("branches", BRANCH_MODES)
def test_both_branch_modes_map_two_views_to_one_logit_and_give_their_features(branches: str) -> None:
    torch.manual_seed(0)
    net = build_two_view_network(branches, WIDTH).eval()
    with torch.no_grad():
        out, features = net(views()), net.features(views())
    assert out.shape == (N, 1) and torch.isfinite(out).all()
    assert features.shape == (N, 2 * FEATURES) and net.feature_dim == 2 * FEATURES
    torch.testing.assert_close(out, net.head(features))


def test_shared_branches_have_half_the_backbone_parameters_of_separate_ones() -> None:
    shared, separate = (build_two_view_network(b, WIDTH) for b in ("shared", "separate"))
    assert len(shared.backbones) == 1 and len(separate.backbones) == 2
    assert parameters(separate.backbones) == 2 * parameters(shared.backbones)
    assert parameters(shared.head) == parameters(separate.head) == 2 * FEATURES + 1


def test_width_64_is_monais_resnet18_with_the_standard_stem() -> None:
    standard = resnet18(spatial_dims=2, n_input_channels=1, num_classes=1)
    branch = build_two_view_network("shared", 64).backbones[0]
    assert parameters(branch) == parameters(standard) - parameters(standard.fc)
    assert branch.conv1.stride == (2, 2) and branch.fc is None


@pytest.mark.parametrize("branches", BRANCH_MODES)
def test_the_cc_view_gives_the_first_features_and_the_mlo_view_the_second(branches: str) -> None:
    torch.manual_seed(0)
    net = build_two_view_network(branches, WIDTH).eval()
    x = views()
    cc_branch, mlo_branch = net.backbones[0], net.backbones[-1]
    with torch.no_grad():
        features = net.features(x)
        torch.testing.assert_close(features[:, :FEATURES], cc_branch(x[:, 0]))
        torch.testing.assert_close(features[:, FEATURES:], mlo_branch(x[:, 1]))
        changed = x.clone()
        changed[:, 1] = torch.randn(N, 1, S, S)  # a new MLO view changes only the MLO half
        after = net.features(changed)
    torch.testing.assert_close(after[:, :FEATURES], features[:, :FEATURES])
    assert not torch.allclose(after[:, FEATURES:], features[:, FEATURES:])


def test_separate_branches_see_only_their_own_view() -> None:
    torch.manual_seed(0)
    net = build_two_view_network("separate", WIDTH).eval()
    x = views()
    with torch.no_grad():
        before = net.features(x)
        for p in net.backbones[1].parameters():
            p.mul_(0.5)  # change the MLO branch only
        after = net.features(x)
    torch.testing.assert_close(after[:, :FEATURES], before[:, :FEATURES])
    assert not torch.allclose(after[:, FEATURES:], before[:, FEATURES:])


@pytest.mark.parametrize("branches", BRANCH_MODES)
def test_gradients_reach_every_branch(branches: str) -> None:
    torch.manual_seed(0)
    net = build_two_view_network(branches, WIDTH).train()
    net(views()).sum().backward()
    for backbone in net.backbones:
        grads = [p.grad for p in backbone.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0
    assert net.head.weight.grad is not None and (net.head.weight.grad[0, :FEATURES] != 0).any() and (net.head.weight.grad[0, FEATURES:] != 0).any()


def test_bad_names_widths_and_shapes_fail_clearly() -> None:
    with pytest.raises(ValueError, match="shared, separate"):
        build_two_view_network("siamese", WIDTH)
    with pytest.raises(ValueError, match="width"):
        TwoViewNet("shared", 0)
    with pytest.raises(ValueError, match=r"\(N, 2, 1, S, S\)"):
        build_two_view_network("shared", WIDTH)(torch.randn(N, 1, S, S))
