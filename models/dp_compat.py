"""The run's network in the variant every site can train with DP-SGD (Opacus), when a site requires it.

Opacus clips each case's gradient, so a network may hold no layer that mixes cases within a batch
(BatchNorm): ``opacus.validators.ModuleValidator.fix`` replaces each by a GroupNorm. The server and
every site build the same variant for a run (run config ``model-variant``, resolved at the
handshake: see ``server/dp_variant.py``), so their state dicts agree.
"""

from __future__ import annotations

from torch import nn

def dp_compatible(model: nn.Module) -> nn.Module:
    """``model`` with Opacus's fixes (BatchNorm -> GroupNorm, ...) and no in-place activations; checked by Opacus's validator."""
    from opacus.validators import ModuleValidator  # noqa: PLC0415 (only runs that need the variant import Opacus)

    fixed = ModuleValidator.fix(model)
    for module in fixed.modules():
        if getattr(module, "inplace", False):
            module.inplace = False
    errors = ModuleValidator.validate(fixed, strict=False)
    if errors:
        raise ValueError(f"the network is not DP-compatible after Opacus's fixes: {'; '.join(map(str, errors))}")
    return fixed
