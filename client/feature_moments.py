"""Sums over a site's training cases of the inputs of a model's feature standardisers (federated z-scoring).

A standardiser (``models.modality_encoders.Standardise``) z-scores features with the federation's
means and SDs. Before a stage trains, the server asks every training site for, per feature, the
number of training cases with a value, their sum and their sum of squares; only these leave the
site, and only over at least the site's ``privacy.min_cell_count`` cases.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from client.clinical_work import check_cell
from client.data import SiteData
from client.training import resolve_device
from models.run_config import RunConfig
from models.task import task_for
from protocol.messages import moments_prefix
from protocol.metrics import NUM_EXAMPLES, candidate_metric


@torch.no_grad()
def feature_moments(data: SiteData, model: nn.Module, cfg: RunConfig, widths: Mapping[str, int]) -> dict[str, Any]:
    """Per feature of each named standardiser: training cases with a finite value, sum and sum of squares (``moments:<module>/moment_*``)."""
    modules = dict(model.named_modules())
    sums: dict[str, list[torch.Tensor]] = {}
    hooks = []
    for name, width in widths.items():
        if name not in modules:
            raise ValueError(f"the model has no module '{name}' to standardise")
        sums[name] = [torch.zeros(width, dtype=torch.float64) for _ in range(3)]
        hooks.append(modules[name].register_forward_pre_hook(_accumulate(sums[name], width)))
    task, device = task_for(cfg), resolve_device(data.config.compute.device)
    model.to(device).eval()
    try:
        for batch in data.loader("train", train=False):
            model(task.network_input({k: v.to(device) for k, v in batch.items()}))
    finally:
        for hook in hooks:
            hook.remove()
    out: dict[str, Any] = {NUM_EXAMPLES: len(data.splits["train"])}
    for name, (n, total, squares) in sums.items():
        check_cell(int(n.min()) if len(n) else 0, data.config, f"feature sums of {name}")
        prefix = moments_prefix(name)
        out |= {candidate_metric(prefix, "moment_n"): n.tolist(), candidate_metric(prefix, "moment_sum"): total.tolist()}
        out[candidate_metric(prefix, "moment_sumsq")] = squares.tolist()
    return out


def _accumulate(into: list[torch.Tensor], width: int) -> Any:
    """A forward pre-hook adding its module's (rows, width) input to the running count, sum and sum of squares."""

    def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0].detach().to("cpu", torch.float64).reshape(-1, width)
        finite = torch.isfinite(x)
        values = torch.where(finite, x, torch.zeros_like(x))
        into[0] += finite.sum(0)
        into[1] += values.sum(0)
        into[2] += (values**2).sum(0)

    return hook
