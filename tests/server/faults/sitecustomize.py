"""Fault injection for deployment tests: a site whose training returns NaN weights.

Put this folder on PYTHONPATH and set AXILLA_FAULT=nan-update for one SuperNode: its ClientApp
processes then train normally and replace every floating-point array of the update with NaN.
"""

from __future__ import annotations

import os
import sys

if os.environ.get("AXILLA_FAULT") == "nan-update" and sys.argv and sys.argv[0].endswith("flwr-clientapp"):
    import torch

    import client.site

    _train_round = client.site.train_round

    def _nan_round(*args, **kwargs):  # type: ignore[no-untyped-def]
        state, metrics = _train_round(*args, **kwargs)
        return {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()}, metrics

    client.site.train_round = _nan_round
