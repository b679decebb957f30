"""Federated z-scoring: set a stage's feature standardisers to the training sites' pooled means and SDs before it trains.

Every ``Standardise`` module of the stage's initial network that no earlier model has set (mean 0,
SD 1) is filled from the training sites' per-feature sums (``client/feature_moments.py``): with
N = sum n, mean = sum(sum) / N and SD = sqrt((sum(sum of squares) - N mean^2) / (N - 1)), exactly
the pooled statistics. A site that refuses (too few cases with the features, its small-cell rule)
is left out and named in ``standardisation.json``; a feature no site has keeps mean 0 and SD 1.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord
from torch import nn

from models.modality_encoders import Standardise
from models.stages import Stage
from protocol.messages import Evaluate, moments_prefix
from protocol.metrics import candidate_metric
from server.run_dir import RunDirectory
from strategies.sites import NodeSite, TooFewSitesError

logger = logging.getLogger("axilla.server")


def unset_standardisers(network: nn.Module) -> dict[str, Standardise]:
    """The network's standardisers still at their initial mean 0 and SD 1, by module name."""
    return {
        name: module for name, module in network.named_modules()
        if isinstance(module, Standardise) and not bool(module.mean.any()) and bool((module.sd == 1).all())
    }  # fmt: skip


def standardise(grid: Any, stage: Stage, sites: Mapping[int, NodeSite], network: nn.Module, run_dir: RunDirectory, courier: Any, models: Mapping[str, ArrayRecord]) -> None:
    """Fill the network's unset standardisers from the training sites' sums (one evaluation message per site)."""
    from server.federation import _evaluate  # federation imports this module: late

    targets = unset_standardisers(network)
    if not targets:
        return
    cfg = stage.cfg
    delivery = courier.delivery(cfg, {name: models[name] for name in stage.crop_with})
    request = Evaluate(
        run=cfg, server_round=stage.offset, stage_offset=stage.offset, segmenters=delivery.refs, split="train",
        moments=tuple((name, str(int(module.mean.numel()))) for name, module in targets.items()),
    )  # fmt: skip
    trainers = {n: s for n, s in sites.items() if s.trains}
    failures: dict[str, str] = {}
    replies = _evaluate(grid, request, trainers, ArrayRecord(network.state_dict()), delivery, failures)
    if not replies:
        raise TooFewSitesError(f"no training site returned the feature sums for z-scoring ({'; '.join(f'{k}: {v}' for k, v in failures.items()) or 'none answered'})")
    record: dict[str, Any] = {"sites": sorted(replies), "missing": failures, "modules": {}}
    for name, module in targets.items():
        mean, sd, n = pooled_moments([_sums(metrics, name) for metrics in replies.values()])
        with torch.no_grad():
            module.mean.copy_(torch.from_numpy(mean))
            module.sd.copy_(torch.from_numpy(sd))
        record["modules"][name] = {"n": n.tolist(), "mean": mean.tolist(), "sd": sd.tolist()}
        logger.info("%s: %s z-scored with %d site(s)' sums (%d-%d cases per feature)", run_dir.rows, name, len(replies), int(n.min()), int(n.max()))
    (run_dir.path / f"standardisation-{stage.name or 'model'}{f'-fold{stage.fold}' if stage.fold else ''}.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def _sums(metrics: Mapping[str, Any], module: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One site's (n, sum, sum of squares) per feature of ``module``."""
    prefix = moments_prefix(module)
    return tuple(np.asarray(metrics[candidate_metric(prefix, key)], dtype=np.float64) for key in ("moment_n", "moment_sum", "moment_sumsq"))  # type: ignore[return-value]


def pooled_moments(sums: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pooled mean and SD (n - 1 denominator) per feature from the sites' sums, and the pooled counts; mean 0, SD 1 where fewer than two values."""
    n = sum(s[0] for s in sums)
    total = sum(s[1] for s in sums)
    squares = sum(s[2] for s in sums)
    enough = n >= 2
    mean = np.where(enough, total / np.maximum(n, 1), 0.0)
    var = np.where(enough, (squares - n * mean**2) / np.maximum(n - 1, 1), 1.0)
    return mean.astype(np.float32), np.sqrt(np.maximum(var, 0.0)).astype(np.float32), n
