"""Which entries of a network's state are normalisation state (FedBN keeps them local) and which are trainable parameters (SCAFFOLD's control variates)."""

from __future__ import annotations

import functools

from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from models.run_config import RunConfig

NORM_TYPES: tuple[type[nn.Module], ...] = (_NormBase, nn.GroupNorm, nn.LayerNorm)  # _NormBase: BatchNorm*, InstanceNorm*, SyncBatchNorm


def norm_state_keys(model: nn.Module) -> tuple[str, ...]:
    """The state-dict keys of the model's normalisation layers (weight, bias, running statistics, counters), decided by module type, in state order."""
    owned = set()
    for prefix, module in model.named_modules():
        if isinstance(module, NORM_TYPES):
            names = [n for n, _ in module.named_parameters(recurse=False)] + [n for n, _ in module.named_buffers(recurse=False)]
            owned.update(f"{prefix}.{n}" if prefix else n for n in names)
    return tuple(k for k in model.state_dict() if k in owned)


def parameter_keys(model: nn.Module) -> tuple[str, ...]:
    """The state-dict keys of the model's floating-point parameters (not buffers), in state order."""
    params = {name for name, p in model.named_parameters() if p.is_floating_point()}
    return tuple(k for k in model.state_dict() if k in params)


@functools.lru_cache(maxsize=16)
def network_keys(cfg: RunConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The run network's normalisation keys and float parameter keys, from the network built on the meta device (no weights)."""
    import torch

    from models.task import build_network

    with torch.device("meta"):
        network = build_network(cfg)
    return norm_state_keys(network), parameter_keys(network)
