"""Which network variant a run trains, decided once after the handshake and the same at every site.

Run config ``model-variant``: ``standard`` (the networks as built), ``dp-compatible`` (Opacus's
fixes: GroupNorm for BatchNorm, no in-place activations; ``models/dp_compat.py``) or ``auto``
(dp-compatible exactly when a training site trains with DP-SGD or the run uses central DP, whose
noise on BatchNorm's running variances could make them negative). The resolved variant is written
to the run's config and the report says which ran and why.
"""

from __future__ import annotations

from collections.abc import Mapping

from models.run_config import RunConfig
from strategies.sites import NodeSite


class VariantError(ValueError):
    """The run config asks for a variant that a site's privacy settings cannot train."""


def resolve_variant(cfg: RunConfig, sites: Mapping[int, NodeSite]) -> tuple[RunConfig, str]:
    """The run config with ``model-variant`` resolved, and why (for the report)."""
    dp_sites = sorted(s.name for s in sites.values() if s.dp and s.trains)
    if cfg.model_variant == "standard" and dp_sites:
        raise VariantError(
            f"run config 'model-variant' = 'standard', but site(s) {', '.join(dp_sites)} train only with DP-SGD, which needs "
            "the dp-compatible variant (no BatchNorm): set model-variant to 'auto' or 'dp-compatible'"
        )
    central = cfg.central_dp != "off"
    if cfg.model_variant == "standard" and central:
        raise VariantError(
            f"run config 'model-variant' = 'standard' with central-dp = {cfg.central_dp!r}: the server's Gaussian noise would fall on "
            "BatchNorm's running variances too, and a negative variance makes the model's outputs NaN; set model-variant to 'auto' or 'dp-compatible'"
        )
    if cfg.model_variant != "auto":
        return cfg, "set in the run config"
    if dp_sites:
        return cfg.replace(model_variant="dp-compatible"), f"auto: site(s) {', '.join(dp_sites)} train with DP-SGD"
    if central:
        return cfg.replace(model_variant="dp-compatible"), f"auto: central DP ({cfg.central_dp}) adds noise to every array, which BatchNorm's running statistics cannot take"
    return cfg.replace(model_variant="standard"), "auto: no training site trains with DP-SGD"
