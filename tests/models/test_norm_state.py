"""The normalisation and parameter entries of a network, decided by module type."""

from __future__ import annotations

import torch
from torch import nn

from models.norm_state import norm_state_keys, parameter_keys


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.inorm = nn.InstanceNorm2d(4, affine=True, track_running_stats=True)
        self.gn = nn.GroupNorm(2, 4)
        self.head = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3))
        self.register_buffer("bn_scale", torch.zeros(1))  # a norm-like name on a module that is no norm layer


def test_norm_keys_are_every_entry_of_every_norm_layer_and_nothing_else() -> None:
    assert norm_state_keys(_Net()) == (
        "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked",
        "inorm.weight", "inorm.bias", "inorm.running_mean", "inorm.running_var", "inorm.num_batches_tracked",
        "gn.weight", "gn.bias", "head.1.weight", "head.1.bias",
    )  # fmt: skip


def test_parameter_keys_are_the_float_parameters_not_the_buffers() -> None:
    keys = parameter_keys(_Net())
    assert keys == ("conv.weight", "conv.bias", "bn.weight", "bn.bias", "inorm.weight", "inorm.bias", "gn.weight", "gn.bias",
                    "head.0.weight", "head.0.bias", "head.1.weight", "head.1.bias")  # fmt: skip
